"""A TCP server that answers every PostgreSQL connection with one FATAL error, as a real
server does: for the failures the local test server cannot be made to give (it trusts
127.0.0.1, so no password can fail; it is not starting up). libpq and psycopg see the same
bytes as from PostgreSQL, so the programs' handling of them is the real one."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class FakePostgres:
    def __init__(self, sqlstate: str, message: str) -> None:
        self.sqlstate = sqlstate
        self.message = message
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn, suppress(OSError):  # a client that went away
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", _read(conn, 8))
            _read(conn, length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                conn.sendall(b"N")  # no encryption: the client goes on in plain text
                continue
            break  # the startup message
        self.connections += 1
        fields = b"".join(
            kind + value.encode() + b"\0"
            for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", self.sqlstate), (b"M", self.message))
        )
        body = fields + b"\0"
        conn.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)

    def url(self, user: str = "app", password: str = "hunter2") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/app?sslmode=disable"

    def close(self) -> None:
        self.sock.close()


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("client went away")
        data += chunk
    return data


@contextmanager
def fake_postgres(sqlstate: str, message: str) -> Iterator[FakePostgres]:
    server = FakePostgres(sqlstate, message)
    try:
        yield server
    finally:
        server.close()
