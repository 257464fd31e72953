"""File system: host secrets and environment, writes outside the workspace, the Docker socket.

The scripts that ``restricted`` runs too only *read* (the decoy file, /proc/self/environ):
restricted runs on the host, so nothing that would harm the host if it got through is ever
sent to it. Transfer tricks (``..``, absolute names, links) are in ``cases_transfers``.
"""

from __future__ import annotations

from .attacks import ALL_BACKENDS, Category, probe
from .weakenings import ROOT, SECRETS

__all__ = ["FILE_ATTACKS"]

F = Category.FILES

HOST_SECRET = """
try:
    print('ESCAPED', open({secret_path!r}).read())
except OSError as exc:
    print('BLOCKED', exc.errno)
"""

OWN_ENVIRON = """
try:
    data = open('/proc/self/environ').read()
except OSError as exc:
    data = ''
    print('BLOCKED unreadable', exc.errno)
if {env_name!r} in data or {secret!r} in data:
    print('ESCAPED', {env_name!r})
elif data:
    print('BLOCKED read', len(data), 'bytes without it')
"""

HOST_ENVIRONMENT = """
import os
found = sorted(k for k, v in os.environ.items() if k == {env_name!r} or {secret!r} in v)
print('ESCAPED' if found else 'BLOCKED', found)
"""

ANY_ENVIRON = """
import os
read, found = 0, []
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        with open('/proc/%s/environ' % pid, 'rb') as handle:
            data = handle.read()
    except OSError:
        continue
    read += 1
    if {secret!r}.encode() in data:
        found.append(pid)
print('ESCAPED' if found else 'BLOCKED', 'read', read, 'found', found)
"""

WRITE_OUTSIDE = """
wrote = []
for folder in ('/etc', '/usr', '/usr/local/bin', '/opt', '/var', '/', '/root', '/home'):
    path = folder.rstrip('/') + '/execloop-{marker}'
    try:
        with open(path, 'w') as handle:
            handle.write('planted')
        wrote.append(path)
    except OSError:
        pass
for own in ('/tmp/execloop-{marker}', 'execloop-{marker}'):  # where writing is the point
    with open(own, 'w') as handle:
        handle.write('fine')
print('ESCAPED' if wrote else 'BLOCKED', wrote)
"""

DOCKER_SOCKET = """
import socket
reached = []
for path in ('/var/run/docker.sock', '/run/docker.sock'):
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
            reached.append(path)
        except OSError:
            pass
print('ESCAPED' if reached else 'BLOCKED', reached)
"""

FILE_ATTACKS = [
    probe("read a host secret file", F, HOST_SECRET, SECRETS, ALL_BACKENDS),
    probe("host environment in /proc/self/environ", F, OWN_ENVIRON, SECRETS, ALL_BACKENDS),
    probe("host environment in os.environ", F, HOST_ENVIRONMENT, SECRETS),
    probe("the secret in any /proc/*/environ", F, ANY_ENVIRON, SECRETS),
    probe("write outside the workspace and /tmp", F, WRITE_OUTSIDE, ROOT),
    probe("connect to the Docker socket", F, DOCKER_SOCKET, SECRETS),
]
