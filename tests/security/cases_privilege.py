"""Privilege: uid 0, capabilities, mounts, namespaces, the kernel log, devices, ptrace.

Each script prints BLOCKED only for the refusal it expects (EPERM and its kin), UNEXPECTED for
any other failure, so a missing binary or library never counts as blocked. The weakened runs
are root with Docker's default capabilities (``ROOT``) or the capabilities in question without
a seccomp filter (``PRIVILEGED``), inside a container: what they change stays in its
namespaces.
"""

from __future__ import annotations

from execloop.sandboxes import ExitReason

from .attacks import ISOLATING, Attack, Category, printed, probe, reason_in
from .weakenings import PLAIN, PRIVILEGED, ROOT

__all__ = ["PRIVILEGE_ATTACKS"]

P = Category.PRIVILEGE

LIBC = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def verdict(result, what, refused=(errno.EPERM, errno.EACCES)):
    if result >= 0:
        print('ESCAPED', what)
        return
    code = ctypes.get_errno()
    print('BLOCKED' if code in refused else 'UNEXPECTED', what, errno.errorcode.get(code))
def alone(call):
    # in a forked, single-threaded child: unshare(CLONE_NEWUSER) is EINVAL in a threaded
    # process (the helper and a kernel are), which would say nothing about the sandbox
    pid = os.fork()
    if pid == 0:
        os._exit(0 if call() >= 0 else min(ctypes.get_errno(), 255) or 255)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    ctypes.set_errno(status)
    return 0 if status == 0 else -1
"""

SETUID = """
import os
import errno
try:
    os.setresuid(0, 0, 0)
    print('ESCAPED uid', os.getuid())
except OSError as exc:  # EINVAL: a user namespace where uid 0 is not mapped at all
    print('BLOCKED' if exc.errno in (errno.EPERM, errno.EINVAL) else 'UNEXPECTED', exc)
"""

CAPABILITIES = """
fields = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
names = ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')
sets = {{name: int(fields[name], 16) for name in names}}
held = {{name: hex(value) for name, value in sets.items() if value}}
ids = fields['Uid'].split() + fields['Gid'].split()
free = fields['NoNewPrivs'].strip() != '1' or '0' in ids
print('ESCAPED' if held or free else 'BLOCKED', held, ids, 'NoNewPrivs', fields['NoNewPrivs'])
"""

MOUNT = (
    LIBC
    + """
os.makedirs('/tmp/mnt-{marker}', exist_ok=True)
verdict(libc.mount(b'none', b'/tmp/mnt-{marker}', b'tmpfs', 0, None), 'mount tmpfs')
"""
)

USER_NAMESPACE = (
    LIBC + "verdict(alone(lambda: libc.unshare(0x10000000)), 'unshare(CLONE_NEWUSER)', "
    "(errno.EPERM, errno.EACCES, errno.ENOSPC))\n"
)
MOUNT_NAMESPACE = LIBC + (
    "verdict(alone(lambda: libc.unshare(0x00020000 | 0x40000000)), 'unshare(NEWNS|NEWNET)')\n"
)
# Reading the host kernel's log (CAP_SYSLOG; dmesg_restrict=1 here). Module loading and raw
# I/O ports are not cases: this suite's kernels are built without them (ENOSYS for everyone),
# so no run could show them working.
KERNEL_LOG = LIBC + "verdict(libc.klogctl(10, None, 0), 'klogctl(SYSLOG_ACTION_SIZE_BUFFER)')\n"
CHROOT = LIBC + "verdict(libc.chroot(b'/tmp'), 'chroot')\n"
HOSTNAME = LIBC + "verdict(libc.sethostname(b'escaped', 7), 'sethostname')\n"

MKNOD = """
import os, stat
try:
    os.mknod('/tmp/mem-{marker}', stat.S_IFCHR | 0o600, os.makedev(1, 1))
    print('ESCAPED made /dev/mem')
except PermissionError as exc:
    print('BLOCKED', exc)
"""

# The hang: PTRACE_TRACEME makes the sandbox's init the tracer, and the next signal
# (the child's SIGCHLD) stops the traced process; weakened, its parent is left with a tracee.
# Contained: the exec ends as data, and the next exec that starts a child (its SIGCHLD
# stops a still-traced session) or a fresh sandbox works.
TRACEME = (
    LIBC.replace("def verdict", "def _unused")
    + """
import subprocess
print('traced', libc.ptrace(0, 0, 0, 0), flush=True)
subprocess.run(['true'])
print('ESCAPED went on traced')
"""
)

PRIVILEGE_ATTACKS = [
    probe("setuid(0)", P, SETUID, ROOT),
    probe("hold a capability, uid 0 or new privileges", P, CAPABILITIES, ROOT),
    probe("mount a file system", P, MOUNT, PRIVILEGED),
    probe("create a user namespace", P, USER_NAMESPACE, PRIVILEGED),
    probe("create mount and network namespaces", P, MOUNT_NAMESPACE, PRIVILEGED),
    probe("read the kernel log", P, KERNEL_LOG, PRIVILEGED),
    probe("chroot", P, CHROOT, ROOT),
    probe("sethostname", P, HOSTNAME, PRIVILEGED),
    probe("mknod a memory device", P, MKNOD, ROOT),
    Attack(
        "ptrace(PTRACE_TRACEME), then a child",
        P,
        ISOLATING,
        TRACEME,
        reason_in(ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED),
        PLAIN,
        printed("traced 0"),
        timeout_s=5,
        fresh=True,  # a session that goes on traced dies at its next signal: not a shared one
        after=("import subprocess\nprint(subprocess.run(['true']).returncode)", "0\n"),
    ),
]
