"""Privilege: uid 0, capabilities, mounts, namespaces, the kernel log, devices, ptrace.

Each script prints BLOCKED only for the refusal it expects (EPERM and its kin), UNEXPECTED for
any other failure, so a missing binary or library never counts as blocked. The weakened runs
are root with Docker's default capabilities (``ROOT``) or the capabilities in question without
a seccomp filter (``PRIVILEGED``), inside a container: what they change stays in its
namespaces.
"""

from __future__ import annotations

from execloop.sandboxes import ExitReason

from .attacks import ESCAPED, ISOLATING, Attack, Category, blocked, printed, reason_in
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
print('ESCAPED' if held else 'BLOCKED', held, 'NoNewPrivs', fields['NoNewPrivs'].strip())
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
# Contained: the exec ends as data, and the next exec or a fresh sandbox works.
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
    Attack("setuid(0)", P, ISOLATING, SETUID, blocked(), ROOT, ESCAPED),
    Attack("hold any capability", P, ISOLATING, CAPABILITIES, blocked(), ROOT, ESCAPED),
    Attack("mount a file system", P, ISOLATING, MOUNT, blocked(), PRIVILEGED, ESCAPED),
    Attack("create a user namespace", P, ISOLATING, USER_NAMESPACE, blocked(), PRIVILEGED, ESCAPED),
    Attack(
        "create mount and network namespaces",
        P,
        ISOLATING,
        MOUNT_NAMESPACE,
        blocked(),
        PRIVILEGED,
        ESCAPED,
    ),
    Attack("read the kernel log", P, ISOLATING, KERNEL_LOG, blocked(), PRIVILEGED, ESCAPED),
    Attack("chroot", P, ISOLATING, CHROOT, blocked(), ROOT, ESCAPED),
    Attack("sethostname", P, ISOLATING, HOSTNAME, blocked(), PRIVILEGED, ESCAPED),
    Attack("mknod a memory device", P, ISOLATING, MKNOD, blocked(), ROOT, ESCAPED),
    Attack(
        "ptrace(PTRACE_TRACEME), then a child",
        P,
        ISOLATING,
        TRACEME,
        reason_in(ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED),
        PLAIN,
        printed("traced 0"),
        timeout_s=5,
    ),
]
