"""The inference pool of the local endpoint: a fixed number of worker threads behind a bounded admission queue.

Connection threads read and parse a request, then ask :meth:`InferencePool.submit` for a place: a request is
admitted while fewer than ``workers + queue_depth`` are running or waiting, and refused at once otherwise (the
server answers 503 with ``Retry-After``), so a burst of clients neither queues without bound nor holds more
than ``workers`` generations in flight.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

RETRY_AFTER_MAX_S = 60
"""Upper bound on the ``Retry-After`` a saturated server suggests, s (an estimate, not a promise)."""
_EWMA_WEIGHT = 0.2
"""Weight of the newest generation time in the running mean behind ``Retry-After``."""


@dataclass(frozen=True)
class PoolLoad:
    """A snapshot of the pool.

    Attributes:
        running: generations in progress (at most ``workers``).
        queued: admitted requests waiting for a worker (at most ``queue_depth``).
        workers: worker threads.
        queue_depth: places in the admission queue.
        mean_generation_s: running mean of the time one generation took, s (``None`` before the first).
    """

    running: int
    queued: int
    workers: int
    queue_depth: int
    mean_generation_s: float | None


class InferencePool:
    """``workers`` threads running generations, admitting at most ``workers + queue_depth`` requests at a time.

    Args:
        workers: worker threads (>= 1).
        queue_depth: admitted requests that may wait for a worker (>= 0); more are refused.
    """

    def __init__(self, workers: int, queue_depth: int) -> None:
        if workers < 1 or queue_depth < 0:
            raise ValueError(f"workers must be >= 1 and queue_depth >= 0 (got {workers}, {queue_depth})")
        self.workers = workers
        self.queue_depth = queue_depth
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._mean_s: float | None = None

    def submit(self, fn: Callable[[T], R], arg: T) -> Future[R] | None:
        """Run ``fn(arg)`` on a worker; ``None`` (nothing runs) when the pool and its queue are full."""
        with self._lock:
            if self._admitted >= self.workers + self.queue_depth:
                return None
            self._admitted += 1
        try:
            return self._executor.submit(self._run, fn, arg)
        except RuntimeError:  # shut down: refuse like a full queue
            with self._lock:
                self._admitted -= 1
            return None

    def _run(self, fn: Callable[[T], R], arg: T) -> R:
        with self._lock:
            self._running += 1
        started = time.perf_counter()
        try:
            return fn(arg)
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self._running -= 1
                self._admitted -= 1
                self._mean_s = took if self._mean_s is None else (1 - _EWMA_WEIGHT) * self._mean_s + _EWMA_WEIGHT * took

    def load(self) -> PoolLoad:
        """The current :class:`PoolLoad`."""
        with self._lock:
            running, admitted, mean = self._running, self._admitted, self._mean_s
        return PoolLoad(running, admitted - running, self.workers, self.queue_depth, mean)

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the time the pool needs to work through what it has admitted
        (mean generation time x admitted / workers), rounded up, within [1, :data:`RETRY_AFTER_MAX_S`]."""
        load = self.load()
        if load.mean_generation_s is None:
            return 1
        estimate = load.mean_generation_s * (load.running + load.queued) / load.workers
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(estimate)))

    def shutdown(self) -> None:
        """Finish the admitted requests, then stop the workers (later submissions are refused)."""
        self._executor.shutdown(wait=True)
