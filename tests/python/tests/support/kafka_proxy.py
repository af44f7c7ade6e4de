"""A TCP proxy in front of a Kafka-protocol broker that holds the broker's answers to one kind of request.

Fault injection for tests: a coordinator that is slow to answer, say, SyncGroup. Clients bootstrap through
the proxy and must be sent back to it by the broker (`Broker(port, advertised_port=proxy.port)`)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

SYNC_GROUP = 14  # Kafka API key


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> bytes | None:
    """One size-prefixed Kafka frame, prefix included; None when the peer closed."""
    head = _read_exact(sock, 4)
    if head is None:
        return None
    body = _read_exact(sock, struct.unpack(">i", head)[0])
    return None if body is None else head + body


class DelayingKafkaProxy:
    """Forwards every byte both ways; an answer to a request with API key `api_key` is held `delay`
    seconds (the answers after it on that connection wait behind it, as they would)."""

    def __init__(self, port: int, upstream_port: int, *, api_key: int, delay: float) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.api_key = api_key
        self.delay = delay
        self.delayed = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> DelayingKafkaProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets + [s for s in [self._listener] if s], []
            self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            listener = self._listener
            if listener is None:
                return
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            held: set[int] = set()
            threading.Thread(target=self._requests, args=(client, upstream, held), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, held), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, held: set[int]) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, _version, correlation_id = struct.unpack(">hhi", frame[4:12])
                if api_key == self.api_key:
                    held.add(correlation_id)
                upstream.sendall(frame)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, held: set[int]) -> None:
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation_id,) = struct.unpack(">i", frame[4:8])
                if correlation_id in held:
                    held.discard(correlation_id)
                    self.delayed += 1
                    time.sleep(self.delay)
                client.sendall(frame)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
