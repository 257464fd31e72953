"""User lookup of a small web app (the code under review)."""


def find_user(conn, name):
    """Return (id, name, email) of the active user called ``name``."""
    query = f"SELECT id, name, email FROM users WHERE name = '{name}' AND active = 1"
    return conn.execute(query).fetchall()
