"""Lingering close: closing a connection whose client may still be sending, without resetting it.

A server that answers before reading the whole request (413, 408, a refusal) and then closes its socket while
unread bytes sit in the kernel's receive buffer makes the kernel send a reset (RFC 1122 4.2.2.13), and a client
still uploading sees ``ConnectionResetError`` instead of the answer already sent. The cure (Apache's
``lingering_close``) is to shut down the sending side (the client sees the end of the answer) and read and
discard what still arrives for a moment before closing. :class:`Lingerer` does that for many sockets in one
thread, so neither the accepting thread nor a connection thread waits on a slow client.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time

logger = logging.getLogger(__name__)

LINGER_S = 2.0
"""How long a socket is drained at most before it is closed, s (Apache's lingering close waits 2 s)."""
LINGER_MAX_BYTES = 32 * 1024 * 1024
"""The most bytes drained (and discarded) from one socket before it is closed anyway."""
_POLL_S = 0.05
"""How often the thread picks up new sockets and expires old ones, s."""
_CHUNK_BYTES = 64 * 1024


class Lingerer:
    """Closes sockets lingeringly in one daemon thread (started on first use).

    Args:
        max_sockets: sockets drained at once; more are closed at once (a reset is possible for those).
        linger_s: how long each is drained at most, s.
        max_bytes: how many bytes each may drain at most.
    """

    def __init__(self, max_sockets: int, linger_s: float = LINGER_S, max_bytes: int = LINGER_MAX_BYTES) -> None:
        self.max_sockets = max_sockets
        self.linger_s = linger_s
        self.max_bytes = max_bytes
        self._incoming: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def close(self, sock: socket.socket) -> None:
        """Shut down ``sock``'s sending side now and close it once the client is done sending (or after
        ``linger_s`` s, or ``max_bytes`` bytes); never blocks."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:  # already reset or closed by the client
            sock.close()
            return
        with self._lock:
            if self._stopped.is_set() or self._count >= self.max_sockets:
                sock.close()
                return
            self._count += 1
            self._incoming.put(sock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lingering-close", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Close every socket still lingering and stop the thread."""
        with self._lock:
            self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        state: dict[socket.socket, tuple[float, int]] = {}  # socket -> (deadline, bytes drained)
        try:
            while not self._stopped.is_set():
                while True:
                    try:
                        sock = self._incoming.get_nowait()
                    except queue.Empty:
                        break
                    state[sock] = (time.monotonic() + self.linger_s, 0)
                    selector.register(sock, selectors.EVENT_READ, data=sock)
                for key, _ in selector.select(timeout=_POLL_S if state else _POLL_S * 4):
                    sock = key.data
                    deadline, drained = state[sock]
                    try:
                        data = sock.recv(_CHUNK_BYTES)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data or drained + len(data) >= self.max_bytes:
                        self._forget(selector, state, sock)
                    else:
                        state[sock] = (deadline, drained + len(data))
                now = time.monotonic()
                for sock in [s for s, (deadline, _) in state.items() if deadline <= now]:
                    self._forget(selector, state, sock)
        finally:
            for sock in list(state):
                self._forget(selector, state, sock)
            while True:  # sockets handed over while stopping
                try:
                    self._incoming.get_nowait().close()
                except queue.Empty:
                    break
            selector.close()

    def _forget(
        self, selector: selectors.BaseSelector, state: dict[socket.socket, tuple[float, int]], sock: socket.socket
    ) -> None:
        selector.unregister(sock)
        del state[sock]
        sock.close()
        with self._lock:
            self._count -= 1
