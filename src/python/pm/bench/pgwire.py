"""A TCP proxy in front of PostgreSQL that records every query a client sends: the round trips of a use
case, counted on the wire (BEGIN, COMMIT, ROLLBACK and a pool's pings included, which SQLAlchemy's
statement events do not see). Used by `pm.bench.write_cost` and by the tests that count round trips.

psycopg2 speaks the simple query protocol: each round trip is one 'Q' message. Connect through
`url(database_url)`, which turns TLS and GSS encryption off so that the messages can be read.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

from sqlalchemy.engine import make_url

_UNTYPED_REQUESTS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered with one byte, then startup


class QueryLog:
    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432), *, port: int = 0) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._queries: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False

    def url(self, database_url: str) -> str:
        """`database_url` through this proxy, unencrypted."""
        parsed = make_url(database_url)
        query = {**parsed.query, "sslmode": "disable", "gssencmode": "disable"}
        return parsed.set(host="127.0.0.1", port=self.port, query=query).render_as_string(hide_password=False)

    def mark(self) -> int:
        with self._lock:
            return len(self._queries)

    def since(self, mark: int) -> list[str]:
        """The queries sent after `mark`, in order, whitespace collapsed."""
        with self._lock:
            return list(self._queries[mark:])

    def __enter__(self) -> QueryLog:
        threading.Thread(target=self._accept, name="pgwire-accept", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._client_to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut_down(source, sink)

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        started = False
        try:
            while data := client.recv(65536):
                server.sendall(data)
                buffer += data
                while True:
                    if not started:
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!II", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer = buffer[length:]
                        started = code not in _UNTYPED_REQUESTS
                        continue
                    if len(buffer) < 5:
                        break
                    kind, length = buffer[:1], struct.unpack("!I", buffer[1:5])[0]
                    if len(buffer) < 1 + length:
                        break
                    body, buffer = buffer[5 : 1 + length], buffer[1 + length :]
                    if kind == b"Q":
                        text = " ".join(body.rstrip(b"\0").decode("utf-8", "replace").split())
                        with self._lock:
                            self._queries.append(text)
        except OSError:
            pass
        finally:
            _shut_down(client, server)


def _shut_down(*sockets: socket.socket) -> None:
    """End both directions of each socket (the other pump's `recv` returns); one already closed is fine."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
