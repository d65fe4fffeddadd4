"""The monitor's HTTP server: ``/metrics``, ``/healthz``, ``/estimate(s)`` and the live page on
one port."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from services.monitor.page import LivePage, static_file
from services.monitor.state import LatestEstimates

__all__ = ["MonitorServer", "start_server"]

log = logging.getLogger(__name__)


class MonitorServer(ThreadingHTTPServer):
    """One thread per connection; a connection idle for ``idle_timeout_s`` is closed, and so
    is one whose request has not been read and answered within ``request_deadline_s``.

    Without the idle timeout every client that connects and goes quiet (a crashed scraper, a
    half-open TCP connection, a port scanner) would hold a thread for ever; without the
    deadline a client sending a header byte every few seconds (slowloris) would, since the
    idle timeout counts per read. The listen backlog is 128, not socketserver's 5: a burst
    of clients (a dashboard opened by a room of people) waits in the kernel's queue instead
    of timing out. A client that goes away mid-request is one DEBUG line, not a traceback.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        state: LatestEstimates,
        idle_timeout_s: float = 30.0,
        page: LivePage | None = None,
        request_deadline_s: float = 20.0,
    ) -> None:
        self.registry = registry
        self.state = state
        self.idle_timeout_s = idle_timeout_s
        self.request_deadline_s = request_deadline_s
        self.page = page if page is not None else LivePage(state)
        self._deadlines: dict[socket.socket, float] = {}  # connection -> its request's end
        self._deadlines_lock = threading.Lock()
        self._closed = threading.Event()
        super().__init__(address, _Handler)
        threading.Thread(target=self._enforce_deadlines, name="monitor-http-deadlines",
                         daemon=True).start()

    def begin_request(self, connection: socket.socket) -> None:
        with self._deadlines_lock:
            self._deadlines[connection] = time.monotonic() + self.request_deadline_s

    def end_request(self, connection: socket.socket) -> None:
        with self._deadlines_lock:
            self._deadlines.pop(connection, None)

    def _enforce_deadlines(self) -> None:
        """Shut down connections past their deadline: the blocked read in their thread ends."""
        while not self._closed.wait(min(1.0, self.request_deadline_s / 4)):
            now = time.monotonic()
            with self._deadlines_lock:
                late = [c for c, deadline in self._deadlines.items() if now >= deadline]
                for connection in late:
                    del self._deadlines[connection]
            for connection in late:
                log.debug("closing a connection whose request took over %gs",
                          self.request_deadline_s)
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: object, client_address: object) -> None:
        """One line, never socketserver's traceback on stderr (it would break JSON logs)."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.error("request from %s failed: %s: %s", client_address,
                      type(exc).__name__, exc)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


class _Handler(BaseHTTPRequestHandler):
    server: MonitorServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Per server rather than the class-wide ``timeout``; a read that times out makes
        # handle_one_request close the connection.
        self.connection.settimeout(self.server.idle_timeout_s)

    def handle_one_request(self) -> None:
        # The deadline runs from the first wait for a request line to the end of the reply.
        self.server.begin_request(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.end_request(self.connection)

    def _reply(self, status: int, body: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(self.server.registry), content_type)
        elif url.path == "/healthz":
            health = self.server.state.health()
            self._reply(200 if health.ok else 503, (health.reason + "\n").encode(),
                        "text/plain; charset=utf-8")
        elif url.path == "/estimate":
            self._estimate(parse_qs(url.query).get("model_id", [None])[0])
        elif url.path == "/estimates":
            self._reply(200, _all_estimates(self.server.state), "application/json")
        elif url.path == "/live.json":
            model_id = parse_qs(url.query).get("model", [None])[0]
            body = json.dumps(self.server.page.view(model_id)).encode() + b"\n"
            self._reply(200, body, "application/json", {"Cache-Control": "no-store"})
        elif url.path == "/" or url.path.startswith("/static/"):
            self._static("index.html" if url.path == "/" else url.path[len("/static/"):])
        else:
            self._not_found()

    def _not_found(self) -> None:
        self._reply(404, b"not found: try /, /metrics, /healthz, /estimate, /estimates or "
                         b"/live.json\n", "text/plain; charset=utf-8")

    def _static(self, name: str) -> None:
        found = static_file(name)
        if found is None:
            self._not_found()
            return
        body, content_type = found
        # The page needs nothing from anywhere else, and the policy makes the browser hold it
        # to that.
        self._reply(200, body, content_type, {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        })

    do_HEAD = do_GET  # noqa: N815

    def _estimate(self, model_id: str | None) -> None:
        state = self.server.state
        latest = state.latest(model_id)
        if latest is None:
            error = ("no estimate received yet" if model_id is None
                     else f"no estimate of model {model_id!r}")
            body = json.dumps({"error": error, "models": list(state.by_model())}).encode()
            self._reply(404, body + b"\n", "application/json")
        else:
            self._reply(200, latest.json, "application/json")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)


def _all_estimates(state: LatestEstimates) -> bytes:
    """``{"models": {id: Estimate}}`` joined from each estimate's JSON as it arrived: parsing
    and re-encoding them per request took 10 s for 21 models of K=40,000-65,536 (60 MB)."""
    parts = [json.dumps(model_id).encode() + b": " + kept.json
             for model_id, kept in state.models().items()]
    return b'{"models": {' + b", ".join(parts) + b"}}\n"


def start_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    state: LatestEstimates,
    idle_timeout_s: float = 30.0,
    page: LivePage | None = None,
    request_deadline_s: float = 20.0,
) -> MonitorServer:
    """Bind (OSError if the port is taken) and serve in a daemon thread; ``shutdown()`` stops."""
    server = MonitorServer((host, port), registry, state, idle_timeout_s, page,
                           request_deadline_s)
    thread = threading.Thread(target=server.serve_forever, name="monitor-http", daemon=True)
    thread.start()
    return server
