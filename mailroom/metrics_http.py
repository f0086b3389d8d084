"""The monitoring endpoint of both programs: /metrics, /healthz and /readyz on one address.

prometheus_client's own server (`start_http_server`) answers the metrics on every path and
has no place for health checks, so its WSGI app (`make_wsgi_app`: content negotiation,
gzip, `name[]` filters) is mounted under a small dispatcher on a threading wsgiref server,
on a daemon thread: a slow scraper never holds up the program, and the program never waits
for the server on its way out.

- `/metrics`: the program's own CollectorRegistry (never the global default registry).
- `/healthz`: 200 while the program's loop turns (its heartbeat is fresh), else 503.
- `/readyz`: 200 when the program can do its job (the program decides), else 503.
Each health answer is one line of text saying why.

The shared layer: it knows nothing of the collector or the sender, which pass in callables.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, disable_created_metrics, make_wsgi_app
from prometheus_client.process_collector import ProcessCollector

from mailroom.heartbeat import Verdict

log = logging.getLogger("mailroom.metrics")


def new_registry() -> CollectorRegistry:
    """A registry of this program's own, with the process's CPU, memory and file descriptors.

    The `_created` series (when each counter was created) are switched off: they double
    the output and nobody graphs them."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    registry = CollectorRegistry(auto_describe=False)  # no collect() at registration: it reads the database
    ProcessCollector(registry=registry)
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # stderr is the program's log: no access lines
        return


def _app(
    registry: CollectorRegistry, live: Callable[[], Verdict], ready: Callable[[], Verdict]
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            try:
                ok, detail = (live if path == "/healthz" else ready)()
            except Exception as exc:  # noqa: BLE001 - a probe must answer, whatever went wrong
                ok, detail = False, f"the check failed: {type(exc).__name__}: {exc}"
            body = f"{'ok' if ok else 'not ok'}: {detail}\n".encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path in ("/metrics", "/"):
            answer: Iterable[bytes] = metrics(environ, start_response)  # make_wsgi_app's app is untyped
            return answer
        body = b"not found: try /metrics, /healthz or /readyz\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    """A started server; `close` stops it (the programs simply exit, the thread is a daemon)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(
    address: tuple[str, int],
    registry: CollectorRegistry,
    live: Callable[[], Verdict],
    ready: Callable[[], Verdict],
) -> MetricsServer:
    """Listen on `address` and answer on a daemon thread; OSError if the address cannot be bound."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = infos[0][0]
    server_class = type("Server", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(
        host, port, _app(registry, live, ready), server_class=server_class, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
