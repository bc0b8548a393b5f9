"""The local endpoint server under load, on 127.0.0.1, with a stand-in model that takes a fixed time per request
(no torch): bursts of clients get 200 or 503 + Retry-After and never a reset, ``/ping`` stays fast, stalled
and oversized uploads are closed cleanly without holding a worker, and every limit is enforced.

The servers run in this process (a thread each) and stop by themselves; the load test takes a few seconds.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stratos_cli.local.serving import (
    MAX_BODY_BYTES,
    EndpointInfo,
    GenerationRequest,
    InferencePool,
    InferenceServer,
    InvocationError,
    ServerLimits,
    main,
)
from stratos_cli.local.serving.client import _post_when_free

pytestmark = pytest.mark.timeout(60)

BODY = json.dumps({"inputs": "Which tiles complete 123m456p789s1122z?"}).encode()
JSON = {"Content-Type": "application/json"}


class FixedTimeModel:
    """Stand-in for :class:`ServingModel`: each generation takes ``seconds`` and they run one at a time (as the
    real model's lock makes them); answers ``"ok"``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self.calls = 0

    def generate(self, request: GenerationRequest) -> str:
        with self._lock:
            self.calls += 1
            time.sleep(self.seconds)
        return "ok"


@contextmanager
def running(limits: ServerLimits, model: Any, tmp_path: Path) -> Iterator[InferenceServer]:
    """An :class:`InferenceServer` on a free port serving ``model`` (``None``: still loading) until the block ends."""
    server = InferenceServer(0, "load-test", tmp_path, limits=limits)
    server.model = model
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def call(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, Any, Any]:
    """(status, headers, decoded JSON body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body, JSON if body is not None else {})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (raises on a reset or after ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def raw_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def post_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_64_clients_4_rounds_get_200_or_503_and_never_a_reset(tmp_path: Path):
    clients, rounds = 64, 4
    limits = ServerLimits(workers=2, queue_depth=8, request_timeout_s=10)
    model = FixedTimeModel(0.05)  # the 10 admitted requests of a round take 0.5 s: the rest of the burst is refused
    outcomes: list[tuple[int, str | None, str | None] | str] = []
    pings: list[tuple[int, float]] = []
    barrier = threading.Barrier(clients)
    done = threading.Event()

    def client() -> None:
        for _ in range(rounds):
            barrier.wait(timeout=30)
            try:
                status, headers, doc = call(server.port, "POST", "/invocations", BODY)
                reason = doc.get("reason") if isinstance(doc, dict) else None
                outcomes.append((status, headers.get("Retry-After"), reason))
            except Exception as exc:  # a reset, a refused connection, a timeout: what must not happen
                outcomes.append(f"{type(exc).__name__}: {exc}")

    def pinger() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                status = call(server.port, "GET", "/ping", timeout=10)[0]
            except Exception:
                status = 0
            pings.append((status, time.perf_counter() - started))
            time.sleep(0.02)

    started = time.perf_counter()
    with running(limits, model, tmp_path) as server:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        ping_thread = threading.Thread(target=pinger)
        ping_thread.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=45)
        done.set()
        ping_thread.join(timeout=15)
        status, _, doc = call(server.port, "GET", "/ping")
        assert (status, doc["status"], doc["running"], doc["queued"]) == (200, "ready", 0, 0)
    elapsed = time.perf_counter() - started

    errors = [o for o in outcomes if isinstance(o, str)]
    answers = [o for o in outcomes if not isinstance(o, str)]
    assert errors == []
    assert len(answers) == clients * rounds
    assert {status for status, _, _ in answers} <= {200, 503}
    ok = sum(status == 200 for status, _, _ in answers)
    refused = [(retry, reason) for status, retry, reason in answers if status == 503]
    # each round starts with an empty pool, so at least its first workers + queue_depth arrivals are served
    assert ok >= rounds * (limits.workers + limits.queue_depth) and ok == model.calls
    assert refused, "the burst never saturated the pool: the test measured nothing"
    assert all(retry is not None and retry.isdigit() and int(retry) >= 1 for retry, _ in refused)
    assert {reason for _, reason in refused} == {"queue_full"}
    assert pings and all(status == 200 for status, _ in pings)
    assert statistics.median(s for _, s in pings) < 0.5 and max(s for _, s in pings) < 2.0
    assert elapsed < 30


def test_stalled_upload_gets_408_and_its_connection_closed_without_holding_the_worker(tmp_path: Path):
    # One worker and no queue: if the stalled upload held the worker, the normal request would be refused.
    limits = ServerLimits(workers=1, queue_depth=0, request_timeout_s=0.5)
    with running(limits, FixedTimeModel(0.01), tmp_path) as server:
        stalled = raw_connection(server.port)
        stalled.sendall(post_head(len(BODY)) + BODY[:10])
        silent = raw_connection(server.port)  # connects and never sends its request line
        started = time.perf_counter()
        assert call(server.port, "POST", "/invocations", BODY)[0] == 200
        answer = read_until_closed(stalled, timeout=5)
        waited = time.perf_counter() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        doc = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert doc["field"] == "<body>" and "10 of" in doc["error"]
        assert 0.4 < waited < 3.0
        assert read_until_closed(silent, timeout=5) == b""  # closed, no answer to a request never sent
        stalled.close()
        silent.close()
        assert call(server.port, "POST", "/invocations", BODY)[0] == 200


def test_oversized_body_is_413_unread_and_closed_cleanly(tmp_path: Path):
    too_big = MAX_BODY_BYTES + 1
    with running(ServerLimits(workers=1, queue_depth=0), FixedTimeModel(0.01), tmp_path) as server:
        # a client still uploading reads the 413 and an orderly close, not a reset
        uploading = raw_connection(server.port)
        uploading.sendall(post_head(too_big) + b"x" * 256 * 1024)
        answer = read_until_closed(uploading, timeout=5)
        uploading.close()
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" in answer and b"the limit is 6291456" in answer

        # Expect: 100-continue: refused before the body is sent
        expecting = raw_connection(server.port)
        expecting.sendall(post_head(too_big, "Expect: 100-continue\r\n"))
        answer = read_until_closed(expecting, timeout=5)
        expecting.close()
        assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer

        # the whole body sent by http.client: drained, not read into memory, and the 413 arrives
        status, _, doc = call(server.port, "POST", "/invocations", b"x" * too_big)
        assert status == 413 and "6291456" in doc["error"]
        # a body within the limit after an Expect header: 100 Continue, then the answer
        ok = raw_connection(server.port)
        ok.sendall(post_head(len(BODY), "Expect: 100-continue\r\n"))
        assert ok.recv(100).startswith(b"HTTP/1.1 100 Continue")
        ok.sendall(BODY)
        answer = read_until_closed(ok, timeout=5)
        ok.close()
        assert b"200 OK" in answer and answer.endswith(b'[{"generated_text": "ok"}]')


def test_connections_over_the_limit_get_503_from_the_accepting_thread(tmp_path: Path):
    limits = ServerLimits(workers=1, queue_depth=0, max_connections=2, request_timeout_s=5)
    with running(limits, FixedTimeModel(0.01), tmp_path) as server:
        idle = [raw_connection(server.port) for _ in range(2)]
        time.sleep(0.3)  # both accepted and waiting for a request line
        status, headers, doc = call(server.port, "POST", "/invocations", BODY)
        assert (status, headers["Retry-After"], doc["reason"]) == (503, "1", "connections_full")
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5
        while call(server.port, "GET", "/ping")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_while_loading_503_carries_retry_after_and_errors_are_json(tmp_path: Path):
    with running(ServerLimits(workers=1, queue_depth=0), None, tmp_path) as server:
        assert call(server.port, "GET", "/ping")[0] == 503
        status, headers, doc = call(server.port, "POST", "/invocations", BODY)
        assert (status, headers["Retry-After"], doc["reason"]) == (503, "5", "loading")
        status, headers, doc = call(server.port, "PUT", "/invocations", BODY)
        assert status == 501 and "PUT" in doc["error"] and headers["Content-Type"] == "application/json"


def test_a_failing_generation_is_500_and_frees_its_worker(tmp_path: Path):
    class Broken:
        def generate(self, request: GenerationRequest) -> str:
            raise RuntimeError("out of memory")

    with running(ServerLimits(workers=1, queue_depth=0), Broken(), tmp_path) as server:
        for _ in range(2):
            status, _, doc = call(server.port, "POST", "/invocations", BODY)
            assert status == 500 and doc["error"] == "generation failed: RuntimeError: out of memory"


def test_the_client_waits_retry_after_and_retries_a_busy_endpoint(tmp_path: Path):
    with running(ServerLimits(workers=1, queue_depth=0), FixedTimeModel(0.6), tmp_path) as server:
        info = EndpointInfo("busy", f"http://127.0.0.1:{server.port}", server.port, 0, "", "", "InService", "")
        occupying = threading.Thread(target=call, args=(server.port, "POST", "/invocations", BODY))
        occupying.start()
        time.sleep(0.1)  # the one worker is busy, and nothing may wait
        started = time.perf_counter()
        with pytest.raises(InvocationError) as busy:
            _post_when_free(info, BODY, timeout_s=10, busy_retries=0)
        assert (busy.value.status, busy.value.retry_after_s) == (503, 1)
        assert "queue holds 0" in str(busy.value)
        assert _post_when_free(info, BODY, timeout_s=10, busy_retries=3) == [{"generated_text": "ok"}]
        assert time.perf_counter() - started >= 1.0  # waited Retry-After (1 s) at least once
        occupying.join()


def test_pool_admits_workers_plus_queue_and_estimates_retry_after():
    pool = InferencePool(workers=2, queue_depth=1)
    release = threading.Event()
    assert pool.retry_after_s() == 1  # nothing measured yet
    futures = [pool.submit(lambda _: release.wait(5), None) for _ in range(4)]
    assert [f is None for f in futures] == [False, False, False, True]
    time.sleep(0.05)
    load = pool.load()
    assert (load.running, load.queued) == (2, 1)
    release.set()
    assert all(f.result(timeout=5) for f in futures if f is not None)
    assert pool.load().running == pool.load().queued == 0
    pool.shutdown()
    assert pool.submit(time.sleep, 0) is None

    serial = InferencePool(workers=1, queue_depth=4)
    slow = [serial.submit(time.sleep, 0.3) for _ in range(5)]
    time.sleep(0.45)  # the first is done (0.3 s measured), the second running, three waiting
    assert serial.retry_after_s() == 2  # ceil(0.3 s x 4 admitted / 1 worker)
    for f in slow:
        assert f is not None
        f.result(timeout=5)
    serial.shutdown()


def test_limits_are_range_checked(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(ValueError, match="max_connections"):
        ServerLimits(workers=4, queue_depth=4, max_connections=8)
    with pytest.raises(ValueError, match="workers"):
        ServerLimits(workers=0)
    with pytest.raises(SystemExit) as info:
        main(["--model-dir", "x", "--queue-depth", "-1"])
    assert info.value.code == 2 and "--queue-depth" in capsys.readouterr().err
    limits = ServerLimits(workers=3, queue_depth=5, request_timeout_s=2.5)
    assert limits.as_args()[:4] == ["--workers", "3", "--queue-depth", "5"]
    assert "2.5" in limits.as_args()
