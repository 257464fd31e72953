"""The threads that fork sandbox processes (``ProcessPlacement`` launches through them)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

__all__ = ["SPAWNER", "Spawner"]


class Spawner:
    """The threads that fork every sandbox of this process; they live as long as the process.

    Not an anyio worker thread: bwrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the
    *thread* that forked exits, and idle worker threads do exit, killing a live sandbox with
    them. Not the event loop thread either: a fork blocks its thread until the child has
    exec'd, ~1 ms on an idle machine and 10 ms on a loaded one, where a hundred sandboxes
    starting at once held the loop every task waits on for a second. A few of them, so that
    one slow fork does not hold up the next."""

    threads = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], Future[None]]] | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child has none of the threads, and the lock may have been held."""
        self._lock = threading.Lock()
        self._owner = self._queue = None

    def submit(self, fork: Callable[[], None]) -> Future[None]:
        done: Future[None] = Future()
        with self._lock:
            if self._queue is None or self._owner != os.getpid():  # first use, or a child
                self._queue, self._owner = queue.SimpleQueue(), os.getpid()
                for number in range(self.threads):
                    threading.Thread(
                        target=self._serve,
                        args=(self._queue,),
                        name=f"execloop-spawner-{number}",
                        daemon=True,
                    ).start()
            self._queue.put((fork, done))
        return done

    @staticmethod
    def _serve(requests: queue.SimpleQueue[tuple[Callable[[], None], Future[None]]]) -> None:
        while True:
            fork, done = requests.get()
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(fork())
                except BaseException as exc:  # the awaiting task raises it
                    done.set_exception(exc)


SPAWNER = Spawner()  # the one per process
