"""The queue in which one process's threads wait, in order, to try for SQLite's write lock."""

from __future__ import annotations

import threading
import time

import pytest

from app.writer_queue import QueueTimeout, WriterQueue


def test_threads_go_through_in_the_order_they_came():
    queue = WriterQueue()
    order: list[int] = []
    front = queue.first_in_line(1)
    front.__enter__()  # the front is taken: everyone else waits in line

    def writer(number: int) -> None:
        with queue.first_in_line(5):
            order.append(number)

    threads = []
    for number in range(8):
        thread = threading.Thread(target=writer, args=(number,))
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # each is in line before the next arrives
    front.__exit__(None, None, None)
    for thread in threads:
        thread.join(5)
    assert order == list(range(8))


def test_a_wait_longer_than_the_timeout_gives_up_and_leaves_the_line():
    queue = WriterQueue()
    front = queue.first_in_line(1)
    front.__enter__()
    with pytest.raises(QueueTimeout):
        with queue.first_in_line(0.05):
            pass
    front.__exit__(None, None, None)
    # The one that gave up is not handed the front: the next comer gets it at once.
    with queue.first_in_line(0.05):
        pass


def test_an_error_at_the_front_passes_the_turn_on():
    queue = WriterQueue()
    with pytest.raises(RuntimeError):
        with queue.first_in_line(1):
            raise RuntimeError("BEGIN failed")
    with queue.first_in_line(0.05):
        pass
