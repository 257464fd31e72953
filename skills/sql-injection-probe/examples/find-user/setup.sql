CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    is_admin INTEGER NOT NULL DEFAULT 0
);
INSERT INTO users (name, email, password_hash, active, is_admin) VALUES
    ('alice', 'alice@example.com', 'pbkdf2$a1', 1, 0),
    ('bob', 'bob@example.com', 'pbkdf2$b2', 1, 0),
    ('carol', 'carol@example.com', 'pbkdf2$c3', 1, 1),
    ('mallory', 'mallory@example.com', 'pbkdf2$m4', 0, 0);
CREATE TABLE api_keys (
    user_id INTEGER NOT NULL REFERENCES users(id),
    key TEXT NOT NULL
);
INSERT INTO api_keys (user_id, key) VALUES (1, 'sk-alice-0001'), (3, 'sk-carol-0003');
