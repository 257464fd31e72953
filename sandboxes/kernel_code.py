"""Code execloop runs inside a Jupyter kernel, as cells (the kernel has no execloop package).

Each snippet cleans up after itself: no name is left in the user's namespace.
"""

from __future__ import annotations

from execloop.sandboxes.kernel_messages import EXIT_MIME, HEALTH_MIME

__all__ = ["OUTPUT_LIMIT_HOOK", "REAP_ZOMBIES", "RUN_FILE", "SESSION_HOOKS"]

# Runs a workspace file as __main__ the way the helper does: its globals join the session, its
# bytes are compiled as Python compiles a file (PEP 263), and SystemExit with anything but an
# int or None is printed and becomes 1, as Python exits (the kernel only reports str(code)).
RUN_FILE = """\
def __execloop_run_file(path, args):
    import os, sys
    saved = sys.argv, sys.path[:1]
    sys.argv, sys.path[:1] = [path, *args], [os.path.dirname(path)]
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
        sys.argv, sys.path[:1] = saved
        globals().update((k, v) for k, v in scope.items() if not k.startswith("__"))
try:
    __execloop_run_file({path!r}, {args!r})
finally:
    del __execloop_run_file
"""

# Run once per kernel. os._exit kills the kernel at once: the hook first flushes the output,
# says which status it was (a display message of execloop's own type) and gives the kernel's
# I/O thread a moment to send. sys.stdout/stderr get the binary .buffer a plain interpreter has.
# After every cell (IPython's post_run_cell event, which fires whether the cell succeeded,
# failed or was interrupted) the kernel checks that the script left it a file descriptor, some
# address space and no tracer (PTRACE_TRACEME), and says so on iopub only when it did not: a
# normal cell costs one execute request, as in a plain kernel. Nothing here may raise: IPython
# would print a callback's traceback into the user's output.
SESSION_HOOKS = f"""\
def __execloop_hooks():
    import codecs, errno, io, mmap, os, sys, time
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
        try:  # one raw read: a text-mode open of it cost the cell three times as much
            fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
            try:
                status = os.read(fd, 65536)
            finally:
                os.close(fd)
        except OSError:
            status = b""
        tracer = status.partition(b"\\nTracerPid:")[2].split(maxsplit=1)[:1]
        if tracer and tracer[0] != b"0":
            why = "the script had the kernel traced (PTRACE_TRACEME): it stops at a signal"
            return "error", why
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
    class BinaryOut(io.BufferedIOBase):
        # What sys.stdout.buffer is in a plain interpreter: bytes in, the stream's text out
        # (a kernel's OutStream has no .buffer). Incremental, so a character split across
        # writes survives; bytes that are not UTF-8 become U+FFFD as the helper shows them.
        def __init__(self, stream):
            super().__init__()
            self.stream = stream
            self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        def writable(self):
            return True
        def write(self, data):
            if self.closed:
                raise ValueError("write to closed file")
            size = memoryview(data).nbytes
            self.stream.write(self.decoder.decode(bytes(data)))
            return size
        def flush(self):
            self.stream.flush()
    for stream in (sys.stdout, sys.stderr):
        if not hasattr(stream, "buffer"):
            try:
                stream.buffer = BinaryOut(stream)
            except AttributeError:  # a stream that takes no attributes keeps its own shape
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

# Run once per kernel, formatted with the spec's output_limit_bytes. IPython keeps every string
# a cell writes in its output history (``InteractiveShell._tee``) and ipykernel buffers it until
# its I/O thread sends it, both without bound: a flood outran the host's interrupt (a 64 MiB
# flood ran to its end, an endless one filled the kernel's memory). So the history tee is off,
# and the streams (their class, as a property: IPython rebinds an instance's ``write``)
# count each execution's characters, never fewer than the host's bytes; past the limit they
# keep nothing more, and the main thread's next write raises KeyboardInterrupt, as the host's
# interrupt would. The pipe-watching thread (fd-level writes) only drops.
OUTPUT_LIMIT_HOOK = """\
def __execloop_limit_output(limit):
    import contextlib, sys, threading
    from IPython import get_ipython
    shell = get_ipython()
    written = [0]
    def reset(*_):
        written[0] = 0
    def limited(write):
        def guarded(self, text):
            if written[0] > limit:
                if threading.current_thread() is threading.main_thread():
                    raise KeyboardInterrupt("execloop: the output limit was reached")
                return len(text)
            written[0] += len(text)
            return write(self, text)
        return guarded
    stream_class = type(sys.stdout)
    if not getattr(stream_class, "execloop_limited", False):
        guarded = limited(stream_class.write)
        # a property: IPython's restore of an instance's write (stream.write = ...) is ignored
        stream_class.write = property(lambda self: guarded.__get__(self), lambda self, _: None)
        stream_class.execloop_limited = True
    shell._tee = lambda channel: contextlib.nullcontext()
    shell.events.register("pre_execute", reset)
__execloop_limit_output({limit})
del __execloop_limit_output
"""
