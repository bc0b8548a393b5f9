"""The endpoint server: SageMaker's hosting contract over HTTP on 127.0.0.1, one model per process.

* ``GET /ping`` — 200 once the model is loaded, 503 while it loads (SageMaker's health check);
* ``POST /invocations`` (``Content-Type: application/json``) — a body :func:`parse_request` accepts; answers
  ``[{"generated_text": "..."}]`` (TGI's shape), or ``{"error": "<field>: <reason>", "field": "<field>"}`` with
  400 (bad request), 411, 413, 415 or 500 (generation failed; the traceback goes to the log only).

Only ``127.0.0.1`` is bound: the server has no authentication, like the container behind SageMaker's own
front end. Generation is serialised by the model's lock (the model is not re-entrant and two CPU generations
in parallel only slow each other down).

Run one server by hand with ``python -m stratos_cli.local.serving --model-dir DIR --port P --endpoint-name NAME``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stratos_cli.local.serving.model import ServingModel
from stratos_cli.local.serving.request import RequestError, parse_request

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""The only interface the server binds: local use, no authentication."""
MAX_BODY_BYTES = 6 * 1024 * 1024
"""Largest request body, bytes: SageMaker real-time InvokeEndpoint's payload limit (6 MB)."""


class InferenceServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving one :class:`ServingModel` under the SageMaker hosting contract.

    ``model`` is ``None`` until :meth:`load` finishes (``/ping`` answers 503 meanwhile); ``load_error`` holds
    the reason a load failed. Request threads are joined on close, so SIGTERM lets an in-flight generation
    finish.
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, port: int, endpoint_name: str, model_dir: Path, threads: int = 0) -> None:
        super().__init__((HOST, port), _Handler)
        self.endpoint_name = endpoint_name
        self.model_dir = model_dir
        self.threads = threads
        self.model: ServingModel | None = None
        self.load_error: str | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        return int(self.server_address[1])

    def load(self) -> None:
        """Load the model (in a background thread while the server already answers 503 to ``/ping``)."""
        started = time.perf_counter()
        try:
            self.model = ServingModel(self.model_dir, self.threads)
        except Exception as exc:  # any load failure ends the process with the reason in its log
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.exception("endpoint %s: cannot load %s", self.endpoint_name, self.model_dir)
            threading.Thread(target=self.shutdown, daemon=True).start()
            return
        logger.info(
            "endpoint %s: loaded %s in %.1f s (stop ids %s, context %d tokens); serving on http://%s:%d",
            self.endpoint_name,
            self.model_dir,
            time.perf_counter() - started,
            self.model.stop_ids,
            self.model.context_tokens,
            HOST,
            self.port,
        )


class _Handler(BaseHTTPRequestHandler):
    server: InferenceServer
    server_version = "StratosLocalEndpoint/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        doc: dict[str, Any] = {"error": message}
        if field is not None:
            doc["field"] = field
        self._send(status, doc)

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._error(404 if self.path != "/invocations" else 405, f"GET {self.path}: not found (GET /ping)")
            return
        if self.server.model is None:
            self._send(503, {"status": "loading" if self.server.load_error is None else "failed"})
            return
        self._send(200, {"status": "ready", "endpoint": self.server.endpoint_name})

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._error(404, f"POST {self.path}: not found (POST /invocations)")
            return
        model = self.server.model
        if model is None:
            self._error(503, "model is still loading")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._error(415, f"Content-Type must be application/json (got {content_type or 'none'!r})")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._error(411, "Content-Length required")
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._error(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES} (SageMaker's 6 MB)")
            return
        try:
            request = parse_request(self.rfile.read(length))
            started = time.perf_counter()
            text = model.generate(request)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.field)
            return
        except Exception as exc:  # a bug or resource failure: reason to the client, traceback to the log
            logger.exception("endpoint %s: generation failed", self.server.endpoint_name)
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        logger.info("generated %d characters in %.2f s", len(text), time.perf_counter() - started)
        self._send(200, [{"generated_text": text}])


def serve(model_dir: Path, port: int, endpoint_name: str, *, port_file: Path | None = None, threads: int = 0) -> int:
    """Run the server until SIGTERM/SIGINT; the model loads in the background after the port is bound.

    Args:
        model_dir: deployed model directory.
        port: TCP port on 127.0.0.1 (0 = any free port; see ``port_file``).
        endpoint_name: the endpoint's name (logs and ``/ping``).
        port_file: when given, the bound port is written here (atomically) once listening.
        threads: torch intra-op threads (0 = torch's default).

    Returns:
        0 after a clean stop, 1 when the model could not be loaded.
    """
    server = InferenceServer(port, endpoint_name, model_dir, threads)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.model_dir, args.port, args.endpoint_name, port_file=args.port_file, threads=args.threads)
