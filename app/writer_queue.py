"""A first-come, first-served queue for the threads of one process that wait to write.

SQLite has one write lock and no queue: whoever tries at the right moment gets it. With the
threads of a gunicorn worker all trying, a writer that kept losing waited through many others'
transactions (the 99th percentile of a PUT at 8 connections was 5 to 7 times its median). In
this queue the threads of a process line up, and only the first of them tries for SQLite's
lock; it leaves the queue as soon as it holds the lock, so the next one is already trying while
it writes. Between processes it stays a race, but of one thread per worker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class QueueTimeout(Exception):
    """The wait in line took longer than the caller would wait for the lock itself."""


class WriterQueue:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False  # someone is at the front, trying for the lock
        self._waiting: deque[threading.Event] = deque()

    @contextmanager
    def first_in_line(self, timeout: float) -> Iterator[None]:
        """Wait (at most `timeout` seconds) until every thread that came earlier is through."""
        self._enter(timeout)
        try:
            yield
        finally:
            self._leave()

    def _enter(self, timeout: float) -> None:
        with self._mutex:
            if not self._busy:
                self._busy = True
                return
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return  # _leave handed the front over to this thread
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ended: the front is ours
                return
            self._waiting.remove(turn)
        raise QueueTimeout

    def _leave(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()  # the front passes on; _busy stays True
            else:
                self._busy = False
