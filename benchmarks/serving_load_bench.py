"""Load on the local endpoint server: latency, 200/503/error counts and throughput as concurrent clients grow.

The server is the real :class:`stratos_cli.local.serving.InferenceServer` in a subprocess on 127.0.0.1, serving
a stand-in model that takes ``--service-ms`` per generation, one at a time (as :class:`ServingModel`'s lock
makes them on a CPU), so the figures are the server's own: how it admits, queues and refuses, not how fast a
model decodes. For each pool (``WORKERSxQUEUE``, e.g. ``2x16``) and each client count, every client sends
``--rounds`` requests, all clients starting each round together (a burst), each request on a new connection
(plain ``http.client`` in threads; no load-test framework), while one more thread asks ``/ping`` every 50 ms.

Per row: requests answered 200 and 503 (``Retry-After`` set) and the errors (connection reset or refused,
timeout: what must stay 0); p50/p95 latency of the 200s and p50 of the 503s, ms; p95 of ``/ping``, ms;
throughput, answered (200) requests per second of wall time.

``--before REF`` adds the server as it was at git ``REF`` (its ``server.py``, run beside today's request parser
and model modules), e.g. ``--before 794f375`` for the server before issue 14's load limits.

Usage: ``python benchmarks/serving_load_bench.py [--json] [--clients 16,64,128] [--pools 1x4,2x16]
[--rounds 4] [--service-ms 25] [--before REF]``.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions")]
SERVER_PATH = "functions/stratos_cli/local/serving/server.py"
BODY = json.dumps({"inputs": "Which tiles complete 123m456p789s1122z?"}).encode()


class FixedTimeModel:
    """Stand-in model: each generation takes ``seconds``, one at a time; answers ``"ok"``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()

    def generate(self, request: Any) -> str:
        with self._lock:
            time.sleep(self.seconds)
        return "ok"


def serve(args: argparse.Namespace) -> None:
    """``--serve``: run one server with the stand-in model until SIGTERM; its port goes to ``--port-file``."""
    if args.server_file:  # an older server.py, imported under its own name
        spec = importlib.util.spec_from_file_location("bench_server_before", args.server_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        server = module.InferenceServer(0, "bench", Path("."))
    else:
        from stratos_cli.local.serving import InferenceServer, ServerLimits

        limits = ServerLimits(workers=args.workers, queue_depth=args.queue_depth)
        server = InferenceServer(0, "bench", Path("."), limits=limits)
    server.model = FixedTimeModel(args.service_ms / 1000)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    Path(args.port_file).write_text(str(server.server_address[1]), encoding="utf-8")
    server.serve_forever(poll_interval=0.05)
    server.server_close()


def start_server(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """A ``--serve`` subprocess and its port."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        command = [sys.executable, __file__, "--serve", "--port-file", str(port_file), *argv]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text(encoding="utf-8"):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server {argv} did not start")
            time.sleep(0.05)
        return process, int(port_file.read_text(encoding="utf-8"))


def call(port: int, method: str, path: str, body: bytes | None, timeout_s: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        response.read()
        if response.status == 503 and response.getheader("Retry-After") is None:
            return -503  # counted as an error: a 503 must say when to retry
        return response.status
    finally:
        connection.close()


def percentile_ms(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values`` (s), in ms; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def load(port: int, clients: int, rounds: int, timeout_s: float) -> dict[str, Any]:
    """``clients`` threads x ``rounds`` bursts of ``POST /invocations``, with ``/ping`` asked meanwhile."""
    outcomes: list[tuple[int | str, float]] = []
    pings: list[tuple[int | str, float]] = []
    barrier = threading.Barrier(clients)
    done = threading.Event()

    def client() -> None:
        for _ in range(rounds):
            barrier.wait(timeout=300)
            started = time.perf_counter()
            try:
                status: int | str = call(port, "POST", "/invocations", BODY, timeout_s)
            except Exception as exc:  # reset, refused, timed out
                status = type(exc).__name__
            outcomes.append((status, time.perf_counter() - started))

    def pinger() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                status: int | str = call(port, "GET", "/ping", None, timeout_s)
            except Exception as exc:
                status = type(exc).__name__
            pings.append((status, time.perf_counter() - started))
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    ping_thread = threading.Thread(target=pinger)
    started = time.perf_counter()
    ping_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done.set()
    ping_thread.join()
    ok = [s for status, s in outcomes if status == 200]
    busy = [s for status, s in outcomes if status == 503]
    errors: dict[str, int] = {}
    for status, _ in outcomes:
        if status not in (200, 503):
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {
        "clients": clients,
        "requests": len(outcomes),
        "ok_200": len(ok),
        "busy_503": len(busy),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "p50_ms_200": percentile_ms(ok, 0.5),
        "p95_ms_200": percentile_ms(ok, 0.95),
        "p50_ms_503": percentile_ms(busy, 0.5),
        "ping_p95_ms": percentile_ms([s for _, s in pings], 0.95),
        "ping_not_200": sum(status != 200 for status, _ in pings),
        "throughput_200_per_s": round(len(ok) / wall, 1),
        "wall_s": round(wall, 2),
    }


def before_server_file(ref: str, directory: Path) -> Path:
    """``server.py`` as it was at git ``ref``, written to ``directory``."""
    text = subprocess.run(
        ["git", "show", f"{ref}:{SERVER_PATH}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = directory / "server_before.py"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--clients", default="16,64,128", help="client counts, comma-separated")
    parser.add_argument("--pools", default="1x4,2x16", help="WORKERSxQUEUE_DEPTH pools, comma-separated")
    parser.add_argument("--rounds", type=int, default=4, help="bursts per client count")
    parser.add_argument("--service-ms", type=float, default=25.0, help="stand-in generation time, ms")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="client timeout per request, s")
    parser.add_argument("--before", metavar="REF", help="also measure server.py as it was at this git ref")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--server-file", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--queue-depth", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return

    counts = [int(c) for c in args.clients.split(",")]
    servers: list[tuple[str, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            before = before_server_file(args.before, Path(tmp))
            servers.append((f"before {args.before}", ["--server-file", str(before)]))
        for pool in args.pools.split(","):
            workers, depth = (int(n) for n in pool.lower().split("x"))
            servers.append((f"pool {workers}x{depth}", ["--workers", str(workers), "--queue-depth", str(depth)]))
        rows = []
        for name, argv in servers:
            for clients in counts:
                process, port = start_server([*argv, "--service-ms", str(args.service_ms)])
                try:
                    rows.append({"server": name, **load(port, clients, args.rounds, args.timeout_s)})
                finally:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        process.kill()
    result = {
        "service_ms": args.service_ms,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Local endpoint under bursts ({args.rounds} rounds per client; stand-in model {args.service_ms:g} ms "
        "per generation, one at a time)"
    )
    columns = (
        "server",
        "clients",
        "requests",
        "ok_200",
        "busy_503",
        "errors",
        "p50_ms_200",
        "p95_ms_200",
        "p50_ms_503",
        "ping_p95_ms",
        "throughput_200_per_s",
        "wall_s",
    )
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "server" else "right")
    for row in rows:
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in columns))
    Console(width=max(Console().width, 150)).print(table)
    for row in rows:
        if row["error_kinds"]:
            print(f"{row['server']}, {row['clients']} clients: errors {row['error_kinds']}")


if __name__ == "__main__":
    main()
