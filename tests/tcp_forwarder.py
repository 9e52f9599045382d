"""A TCP forwarder the test controls, between the service and PostgreSQL: cut, blackholed,
restored. Used in-process (tests/test_db_faults.py) and in front of gunicorn's workers
(tests/e2e/test_production_proof.py)."""

from __future__ import annotations

import socket
import threading

from tests.net import free_port


class Forwarder:
    """A TCP proxy between the app and PostgreSQL that the test cuts, blackholes and restores."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.mode = "forward"  # or "blackhole": accept connections, never answer
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """The database is gone: new connections are refused, open ones are cut."""
        if self._listener is not None:
            _close(self._listener)  # shutdown() wakes the thread blocked in accept()
            self._listener = None
        with self._lock:
            for s in self._sockets:
                _close(s)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._sockets.append(client)
            if self.mode == "blackhole":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(sink)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
