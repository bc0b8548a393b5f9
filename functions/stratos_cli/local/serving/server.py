"""The endpoint server: SageMaker's hosting contract over HTTP on 127.0.0.1, one model per process.

* ``GET /ping`` — 200 once the model is loaded, 503 while it loads (SageMaker's health check); answered by the
  connection's own thread, so it stays fast while every inference worker is busy;
* ``POST /invocations`` (``Content-Type: application/json``) — a body :func:`parse_request` accepts; answers
  ``[{"generated_text": "..."}]`` (TGI's shape; with ``parameters.details`` also TGI's ``details``:
  ``finish_reason``, ``generated_tokens``, ``seed``, and ``prefill`` with ``decoder_input_details``), or
  ``{"error": "<field>: <reason>", "field": "<field>"}`` with 400 (bad request), 408 (the body did not arrive
  in time), 411, 413, 415 or 500 (generation failed; the traceback goes to the log only), or ``{"error": ...,
  "reason": ..., "retry_after_s": N}`` with 503 and a ``Retry-After: N`` header (``reason``: ``loading``,
  ``queue_full`` or ``connections_full``).

Load is bounded at every stage (:class:`ServerLimits`): the listen backlog holds a burst of connections instead
of resetting them; at most ``max_connections`` connection threads read requests and write answers; a request
must arrive within ``request_timeout_s`` (a stalled upload gets 408 and its connection closed, and never
reaches a worker); a parsed request then takes a place in the :class:`InferencePool` (``workers`` generations
at a time, ``queue_depth`` waiting) or is answered 503 at once. Every response closes its connection; one that
leaves a request body unread (413, 408, a refusal) is closed lingeringly (:mod:`~stratos_cli.local.serving.linger`),
so the client reads the answer instead of a connection reset.

Only ``127.0.0.1`` is bound: the server has no authentication, like the container behind SageMaker's own
front end. :class:`ServingModel` serialises its generations with a lock (the model is not re-entrant and two
CPU generations in parallel only slow each other down); the other workers render, tokenise and decode meanwhile.

Run one server by hand with ``python -m stratos_cli.local.serving --model-dir DIR --port P --endpoint-name NAME``
(``--help`` lists the limits).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratos_cli.local.serving.linger import Lingerer
from stratos_cli.local.serving.model import DetailedGenerator, Generation, ServingModel, TextGenerator
from stratos_cli.local.serving.pool import InferencePool
from stratos_cli.local.serving.request import RequestError, parse_request

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""The only interface the server binds: local use, no authentication."""
MAX_BODY_BYTES = 6 * 1024 * 1024
"""Largest request body, bytes: SageMaker real-time InvokeEndpoint's payload limit (6 MB)."""
LOADING_RETRY_AFTER_S = 5
"""``Retry-After`` while the model loads, s (a 135M model loads in a few seconds here)."""
_READ_CHUNK_BYTES = 64 * 1024


def default_workers() -> int:
    """Inference workers by default: the machine's cores, at most 4. One generation already uses every core
    (torch intra-op threads) and :class:`ServingModel` runs one at a time; the other workers prepare and
    finish requests meanwhile, and more would only wait on the model's lock."""
    return max(1, min(4, os.cpu_count() or 1))


class ServerLimits(BaseModel):
    """How much load one endpoint server takes on; each field's description gives its unit and reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        le=64,
        description="inference worker threads, 1..64 (default: the cores, at most 4; see default_workers)",
    )
    queue_depth: int = Field(
        16,
        ge=0,
        le=4096,
        description="admitted requests that may wait for a worker, 0..4096; beyond it 503 + Retry-After "
        "(default 16: past a few generations' wait a client does better to retry later)",
    )
    max_connections: int = Field(
        256,
        ge=2,
        le=10_000,
        description="connections served at once (each holds a thread), 2..10000; beyond it 503 from the "
        "accepting thread (default 256: room for the admitted requests plus /ping and quick refusals)",
    )
    backlog: int = Field(
        1024,
        ge=1,
        le=65_535,
        description="listen backlog (connections the kernel holds until accepted), 1..65535; the kernel caps it "
        "at net.core.somaxconn (default 1024: a burst of hundreds of clients is accepted, not reset)",
    )
    request_timeout_s: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="seconds a client may pause while sending its request line and headers, and may take for "
        "the whole body; then 408 and the connection is closed (default 20 s: 6 MB arrive in milliseconds on "
        "127.0.0.1)",
    )

    @model_validator(mode="after")
    def _connections_cover_admitted(self) -> Self:
        if self.max_connections <= self.workers + self.queue_depth:
            raise ValueError(
                f"max_connections ({self.max_connections}) must exceed workers + queue_depth "
                f"({self.workers + self.queue_depth}): admitted requests hold connections, and /ping needs one"
            )
        return self

    def as_args(self) -> list[str]:
        """The server command-line options that set these limits."""
        return [
            *("--workers", str(self.workers)),
            *("--queue-depth", str(self.queue_depth)),
            *("--max-connections", str(self.max_connections)),
            *("--backlog", str(self.backlog)),
            *("--request-timeout-s", str(self.request_timeout_s)),
        ]


class InferenceServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving one :class:`TextGenerator` under the SageMaker hosting contract, within
    :class:`ServerLimits`.

    ``model`` is ``None`` until :meth:`load` finishes (``/ping`` answers 503 meanwhile); ``load_error`` holds
    the reason a load failed. A test or benchmark may set ``model`` to a stand-in instead of calling
    :meth:`load`. Connection threads are joined and the pool finishes its admitted requests on close, so
    SIGTERM lets in-flight generations finish.
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self, port: int, endpoint_name: str, model_dir: Path, threads: int = 0, limits: ServerLimits | None = None
    ) -> None:
        self.limits = limits or ServerLimits()
        self.request_queue_size = self.limits.backlog  # the listen() backlog (socketserver's default is 5)
        self._connections = threading.BoundedSemaphore(self.limits.max_connections)
        self.pool = InferencePool(self.limits.workers, self.limits.queue_depth)
        self._lingerer = Lingerer(max_sockets=self.limits.max_connections)
        self._to_linger: set[socket.socket] = set()
        self._to_linger_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)
        self.endpoint_name = endpoint_name
        self.model_dir = model_dir
        self.threads = threads
        self.model: TextGenerator | None = None
        self.load_error: str | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        return int(self.server_address[1])

    def load(self) -> None:
        """Load the model (in a background thread while the server already answers 503 to ``/ping``)."""
        started = time.perf_counter()
        try:
            model = ServingModel(self.model_dir, self.threads)
        except Exception as exc:  # any load failure ends the process with the reason in its log
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.exception("endpoint %s: cannot load %s", self.endpoint_name, self.model_dir)
            threading.Thread(target=self.shutdown, daemon=True).start()
            return
        self.model = model
        logger.info(
            "endpoint %s: loaded %s in %.1f s (stop ids %s, context %d tokens); serving on http://%s:%d "
            "(%d workers, queue %d, %d connections, request timeout %.0f s)",
            self.endpoint_name,
            self.model_dir,
            time.perf_counter() - started,
            model.stop_ids,
            model.context_tokens,
            HOST,
            self.port,
            self.limits.workers,
            self.limits.queue_depth,
            self.limits.max_connections,
            self.limits.request_timeout_s,
        )

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a connection thread, or answer 503 from this (the accepting) thread when ``max_connections``
        are already open."""
        if not self._connections.acquire(blocking=False):
            self._refuse(request)
            self._lingerer.close(request)  # the request is left unread
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def linger_on_close(self, request: socket.socket) -> None:
        """Close ``request`` (a connection's socket) lingeringly once its handler is done: its client may still
        be sending a body nobody read (see :mod:`~stratos_cli.local.serving.linger`)."""
        with self._to_linger_lock:
            self._to_linger.add(request)

    def shutdown_request(self, request: Any) -> None:
        with self._to_linger_lock:
            linger = request in self._to_linger
            self._to_linger.discard(request)
        if linger:
            self._lingerer.close(request)
        else:
            super().shutdown_request(request)

    def _refuse(self, request: socket.socket) -> None:
        """A canned 503 (non-blocking: the accepting thread never waits on a client)."""
        doc = {
            "error": f"busy: {self.limits.max_connections} connections open; retry after 1 s",
            "reason": "connections_full",
            "retry_after_s": 1,
        }
        body = json.dumps(doc).encode("utf-8")
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        logger.warning("endpoint %s: %d connections open; refused one", self.endpoint_name, self.limits.max_connections)
        try:
            request.setblocking(False)
            request.send(head + body)
        except OSError:
            pass

    def server_close(self) -> None:
        """Stop listening, join the connection threads, then let the pool finish and stop its workers, and
        close the connections still lingering."""
        super().server_close()
        self.pool.shutdown()
        self._lingerer.stop()


class _BodyIncompleteError(Exception):
    """The client stopped sending before ``Content-Length`` bytes: ``received`` bytes came, ``timed_out`` says
    whether it stalled (rather than closed its side)."""

    def __init__(self, received: int, timed_out: bool) -> None:
        super().__init__(received, timed_out)
        self.received = received
        self.timed_out = timed_out


class _Handler(BaseHTTPRequestHandler):
    server: InferenceServer
    server_version = "StratosLocalEndpoint/1"
    # HTTP/1.1 so that a client sending "Expect: 100-continue" learns of a 413 before it uploads the body; every
    # response still carries "Connection: close" (one request per connection: no idle keep-alive threads).
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self._body_done = False
        super().setup()
        self.connection.settimeout(self.server.limits.request_timeout_s)  # each read and write of this connection

    def finish(self) -> None:
        super().finish()
        if self._body_left_unread():
            self.server.linger_on_close(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, doc: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        body = json.dumps(doc).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError as exc:  # the client went away before reading its answer
            self.close_connection = True
            logger.info("%s: could not send the %d answer: %s", self.address_string(), status, exc)

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        doc: dict[str, Any] = {"error": message}
        if field is not None:
            doc["field"] = field
        self._send(status, doc)

    def _unavailable(self, message: str, reason: str, retry_after_s: int) -> None:
        doc = {"error": message, "reason": reason, "retry_after_s": retry_after_s}
        self._send(503, doc, [("Retry-After", str(retry_after_s))])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own rejections (malformed request line, unsupported method, headers too long, request
        line timed out) as JSON like every other error."""
        default = self.responses.get(code, ("error", ""))[0]
        self._error(code, message or default)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse a POST before its body is sent when its headers already fail."""
        if self.command == "POST" and self._check_post_headers() is None:
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._error(404 if self.path != "/invocations" else 405, f"GET {self.path}: not found (GET /ping)")
            return
        if self.server.model is None:
            self._send(503, {"status": "loading" if self.server.load_error is None else "failed"})
            return
        load = self.server.pool.load()
        doc = {"status": "ready", "endpoint": self.server.endpoint_name, "running": load.running, "queued": load.queued}
        self._send(200, doc)

    def _check_post_headers(self) -> tuple[int, TextGenerator] | None:
        """The body length of an acceptable ``POST /invocations`` and the model to serve it; ``None`` once an
        error answer has been sent."""
        if self.path != "/invocations":
            self._error(404, f"POST {self.path}: not found (POST /invocations)")
            return None
        model = self.server.model
        if model is None:
            self._unavailable("model is still loading", "loading", LOADING_RETRY_AFTER_S)
            return None
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._error(415, f"Content-Type must be application/json (got {content_type or 'none'!r})")
            return None
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._error(411, "Content-Length required")
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._error(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES} (SageMaker's 6 MB)")
            return None
        return length, model

    def do_POST(self) -> None:
        checked = self._check_post_headers()
        if checked is None:
            return
        length, model = checked
        pool = self.server.pool
        try:
            raw = self._read_body(length)
        except _BodyIncompleteError as exc:
            if exc.timed_out:
                timeout = self.server.limits.request_timeout_s
                self._error(408, f"<body>: {exc.received} of {length} bytes arrived in {timeout:g} s", "<body>")
            else:
                self.close_connection = True
                logger.info("%s: closed after %d of %d body bytes", self.address_string(), exc.received, length)
            return
        try:
            request = parse_request(raw)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.field)
            return
        if request.details and not isinstance(model, DetailedGenerator):
            self._error(400, "parameters.details: this model does not report details", "parameters.details")
            return
        future = pool.submit(
            model.generate_details if isinstance(model, DetailedGenerator) else model.generate, request
        )
        if future is None:
            load, retry = pool.load(), pool.retry_after_s()
            message = (
                f"busy: {load.running} generations running and {load.queued} waiting (the queue holds "
                f"{load.queue_depth}); retry after {retry} s"
            )
            self._unavailable(message, "queue_full", retry)
            return
        started = time.perf_counter()
        try:
            result = future.result()
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.field)
            return
        except Exception as exc:  # a bug or resource failure: reason to the client, traceback to the log
            logger.exception("endpoint %s: generation failed", self.server.endpoint_name)
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        text = result.text if isinstance(result, Generation) else str(result)
        logger.info("generated %d characters in %.2f s (queue wait included)", len(text), time.perf_counter() - started)
        answer: dict[str, Any] = {"generated_text": text}
        if request.details and isinstance(result, Generation):
            answer["details"] = result.details(request.seed, request.decoder_input_details)
        self._send(200, [answer])

    def _read_body(self, length: int) -> bytes:
        """``length`` body bytes, which must all arrive within ``request_timeout_s`` (read in chunks, so a
        client trickling bytes cannot stretch it).

        Raises:
            _BodyIncompleteError: the client closed its side, or the time ran out, first.
        """
        deadline = time.monotonic() + self.server.limits.request_timeout_s
        chunks: list[bytes] = []
        received = 0
        try:
            while received < length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _BodyIncompleteError(received, timed_out=True)
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(_READ_CHUNK_BYTES, length - received))
                if not chunk:
                    raise _BodyIncompleteError(received, timed_out=False)
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError as exc:
            raise _BodyIncompleteError(received, timed_out=True) from exc
        finally:
            self.connection.settimeout(self.server.limits.request_timeout_s)
        self._body_done = True
        return b"".join(chunks)

    def _body_left_unread(self) -> bool:
        """Whether the client may still be sending a body this handler did not read."""
        if self._body_done:
            return False
        headers = getattr(self, "headers", None)
        if headers is None:  # the request line or headers were rejected or never came
            return True
        length = (headers.get("Content-Length") or "0").strip()
        return headers.get("Transfer-Encoding") is not None or length != "0"


def serve(
    model_dir: Path,
    port: int,
    endpoint_name: str,
    *,
    port_file: Path | None = None,
    threads: int = 0,
    limits: ServerLimits | None = None,
) -> int:
    """Run the server until SIGTERM/SIGINT; the model loads in the background after the port is bound.

    Args:
        model_dir: deployed model directory.
        port: TCP port on 127.0.0.1 (0 = any free port; see ``port_file``).
        endpoint_name: the endpoint's name (logs and ``/ping``).
        port_file: when given, the bound port is written here (atomically) once listening.
        threads: torch intra-op threads (0 = torch's default).
        limits: load limits (``None`` = :class:`ServerLimits` defaults).

    Returns:
        0 after a clean stop, 1 when the model could not be loaded.
    """
    server = InferenceServer(port, endpoint_name, model_dir, threads, limits)
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(server.port), encoding="utf-8")
        tmp.replace(port_file)

    def stop(signum: int, _frame: Any) -> None:
        logger.info("endpoint %s: signal %d, stopping after in-flight requests", endpoint_name, signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.load, name="load-model", daemon=True).start()
    logger.info("endpoint %s: listening on http://%s:%d, loading %s", endpoint_name, HOST, server.port, model_dir)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    logger.info("endpoint %s: stopped", endpoint_name)
    return 1 if server.load_error else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stratos_cli.local.serving``: one endpoint server in the foreground (logs to stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m stratos_cli.local.serving", description="Serve a deployed model dir on 127.0.0.1."
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="deployed model directory")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free one; default 8080)")
    parser.add_argument("--endpoint-name", default="local", help="endpoint name for logs and /ping")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    fields = ServerLimits.model_fields
    for name, kind in (
        ("workers", int),
        ("queue_depth", int),
        ("max_connections", int),
        ("backlog", int),
        ("request_timeout_s", float),
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=fields[name].description)
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    try:
        limits = ServerLimits(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = f"--{str(error['loc'][0]).replace('_', '-')}: " if error["loc"] else ""
        parser.error(f"{where}{error['msg']}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(
        args.model_dir, args.port, args.endpoint_name, port_file=args.port_file, threads=args.threads, limits=limits
    )
