"""Code execloop runs inside a Jupyter kernel, as cells (the kernel has no execloop package).

Each snippet cleans up after itself: no name is left in the user's namespace.
"""

from __future__ import annotations

from execloop.sandboxes.kernel_messages import EXIT_MIME, HEALTH_MIME

__all__ = ["REAP_ZOMBIES", "RUN_FILE", "SESSION_HOOKS"]

# Runs a workspace file as __main__ the way the helper does: its globals join the session, its
# folder comes first on sys.path for the run (inserted: ipykernel has removed the cwd, so
# index 0 is PYTHONPATH's first entry, e.g. the folder of execloop_progress), its
# bytes are compiled as Python compiles a file (PEP 263), and SystemExit with anything but an
# int or None is printed and becomes 1, as Python exits (the kernel only reports str(code)).
RUN_FILE = """\
def __execloop_run_file(path, args):
    import os, sys
    saved, folder = sys.argv, os.path.dirname(path)
    sys.argv = [path, *args]
    sys.path.insert(0, folder)
    scope = {{"__name__": "__main__", "__file__": path}}
    try:
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec")
        try:
            exec(code, scope)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                raise
            print(exc.code, file=sys.stderr)
            raise SystemExit(1) from None
    finally:
        sys.argv = saved
        if folder in sys.path:
            sys.path.remove(folder)
        globals().update((k, v) for k, v in scope.items() if not k.startswith("__"))
try:
    __execloop_run_file({path!r}, {args!r})
finally:
    del __execloop_run_file
"""

# Run once per kernel. os._exit kills the kernel at once: the hook first flushes the output,
# says which status it was (a display message of execloop's own type) and gives the kernel's
# I/O thread a moment to send. After every cell (IPython's post_run_cell event, which fires
# whether the cell succeeded, failed or was interrupted) the kernel checks that the script left
# it a file descriptor and some address space, and says so on iopub only when it did not: a
# normal cell costs one execute request, as in a plain kernel. Nothing here may raise: IPython
# would print a callback's traceback into the user's output.
SESSION_HOOKS = f"""\
def __execloop_hooks():
    import errno, mmap, os, sys, time
    from IPython import get_ipython
    from IPython.display import publish_display_data
    real, parent = os._exit, os.getpid()
    def _exit(status, /):
        code = status.__index__()
        if os.getpid() == parent:
            try:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:
                        pass
                publish_display_data({{{EXIT_MIME!r}: {{"status": code}}}})
                time.sleep(0.3)
            finally:
                real(code)
        real(code)
    def trouble():
        try:
            os.close(os.dup(2))
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return "error", "the script used up the file descriptors (EMFILE)"
        try:
            mmap.mmap(-1, 8 << 20).close()
        except (OSError, MemoryError):
            return "oom", "the script left the kernel no memory (threads or data fill it)"
        return None
    def after_cell(result=None):
        try:
            found = trouble()
        except MemoryError:
            found = "oom", "the script left the kernel no memory"
        except BaseException:
            return
        if found is not None:
            try:
                publish_display_data({{{HEALTH_MIME!r}: {{"reason": found[0], "why": found[1]}}}})
            except BaseException:
                pass
    os._exit = _exit
    get_ipython().events.register("post_run_cell", after_cell)
__execloop_hooks()
del __execloop_hooks
"""

# Only a parent reaps its zombies, and the kernel's killed children would count against the
# pids limit: reaped by the kernel itself, silently, leaving no name behind.
REAP_ZOMBIES = """\
def __execloop_reap():
    import os
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
__execloop_reap()
del __execloop_reap
"""
