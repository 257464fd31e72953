"""Network: no interface but ``lo``, no route, no DNS, no way to the host's loopback.

No script ever sends a packet off the machine: routes are read from ``/proc/net`` and tested
with a UDP ``connect`` (a route lookup that sends nothing); the only peers ever contacted
are the suite's own listeners on the host's loopback. The weakened run shares the host's
network namespace (``HOST_NET``), which shows what the same reads and lookups find there.
"""

from __future__ import annotations

from .attacks import Category, Weakening, probe
from .weakenings import HOST_NET, PRIVILEGED

__all__ = ["DNS_NAME", "NETWORK_ATTACKS"]

N = Category.NETWORK
# RFC 2606 reserves .invalid: even a leaked query could never be answered.
DNS_NAME = "decoy.execloop.invalid"
RESOLVER_ENTRY = Weakening(
    "a resolver entry for the name", {"extra_hosts": {DNS_NAME: "127.0.0.1"}}
)

INTERFACES = """
import socket
names = sorted(name for _, name in socket.if_nameindex())
print('ESCAPED' if names != ['lo'] else 'BLOCKED', names)
"""

ROUTES = """
def table(path, skip):
    try:
        with open(path) as handle:
            rows = [line.split() for line in handle.read().splitlines()[skip:]]
    except FileNotFoundError:
        return []
    return [row for row in rows if row and 'lo' not in row]
found = table('/proc/net/route', 1) + table('/proc/net/ipv6_route', 0)
print('ESCAPED' if found else 'BLOCKED', len(found), 'routes off lo')
"""

# connect() on a UDP socket only looks the route up: no packet is sent.
ROUTE_TO_METADATA = """
import errno, socket
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    try:
        sock.connect(('169.254.169.254', 80))
        print('ESCAPED a route from', sock.getsockname()[0])
    except OSError as exc:
        print('BLOCKED' if exc.errno == errno.ENETUNREACH else 'UNEXPECTED', exc)
"""

DNS = f"""
import socket
try:
    print('ESCAPED', socket.getaddrinfo({DNS_NAME!r}, 80)[0][4])
except socket.gaierror as exc:
    print('BLOCKED', exc)
"""

HOST_LOOPBACK = """
import socket
with socket.socket() as sock:
    sock.settimeout(3)
    try:
        sock.connect(('127.0.0.1', {port}))
        print('ESCAPED connected to the host loopback')
    except ConnectionRefusedError as exc:
        print('BLOCKED', exc)
"""

ABSTRACT_SOCKET = """
import socket
with socket.socket(socket.AF_UNIX) as sock:
    sock.settimeout(3)
    try:
        sock.connect('\\0' + {abstract!r})
        print('ESCAPED reached the host abstract socket')
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        print('BLOCKED', exc)
"""

RAW_SOCKET = """
import socket
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
    print('ESCAPED opened a raw packet socket')
except PermissionError as exc:
    print('BLOCKED', exc)
"""

NETWORK_ATTACKS = [
    probe("an interface besides lo", N, INTERFACES, HOST_NET),
    probe("a route off loopback", N, ROUTES, HOST_NET),
    probe("a route to the metadata address", N, ROUTE_TO_METADATA, HOST_NET),
    probe("DNS resolution", N, DNS, RESOLVER_ENTRY),
    probe("a listener on the host's loopback", N, HOST_LOOPBACK, HOST_NET),
    probe("a host abstract Unix socket", N, ABSTRACT_SOCKET, HOST_NET),
    probe("a raw packet socket", N, RAW_SOCKET, PRIVILEGED),
]
