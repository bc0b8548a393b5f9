"""A bounded closed-loop load test of a text-generation endpoint at a task spec's latency shape.

What it sends: ``concurrency`` clients, each sending its next request as soon as its previous one is answered
(a closed loop: exactly ``concurrency`` requests in flight, which is what ``constraints.latency.concurrency``
means and what the planner's latency estimate assumes), ``{"inputs": <prompt>, "parameters": {"max_new_tokens":
output_tokens, "details": true, "decoder_input_details": true}}`` (TGI's invocation shape, which the Hugging Face
LLM container on SageMaker and the local endpoint both serve), greedy decoding.

Bounds (:class:`LoadShape`): two one-token probes and one warm-up request of the measured shape, alone first and
excluded from the figures (with the first probe's retry without ``details``, at most four); then at most
``requests`` measured requests (default :func:`default_requests`: 4 per client, at least 16), issued for at most
``max_seconds`` (default 120 s); requests still in flight at the cap are waited for (each is bounded by the
transport's timeout, :data:`REQUEST_TIMEOUT_S`), so the measured phase lasts at most ``max_seconds`` + one request.

The prompt (:func:`prompt_text`): the request's number, then common English words from another word for each
request (so a server's prefix cache cannot serve one request's prefill from another's). Its length: when the
endpoint reports a prompt's token count (TGI ``details.prefill``), two one-token probes of a quarter and an eighth
of the target (by :data:`CHARS_PER_TOKEN` = 4 characters a token, OpenAI's rule of thumb for English text) give
two points of prefill tokens = overhead + characters / rate, and the prompts are sized by the line through them:
``prompt_tokens`` long as the endpoint counts them, chat template included; otherwise ``prompt_tokens`` x 4
characters.

What it measures (:class:`LoadTestResult`): each measured request's latency = the wall time of one
``transport.invoke`` call on this client (``time.perf_counter``), so it includes the network and SageMaker's
front end, as a caller sees it; ``p50_ms`` / ``p90_ms`` by :func:`percentile` (linear interpolation, numpy's
default); ``tokens_per_s`` = the generated tokens of the successful measured requests / the measured phase's
wall time (first send to last answer): aggregate throughput at that concurrency, the planner's
:func:`~stratos.planner.estimators.throughput_tokens_per_s`. Generated tokens are as the endpoint reports them
(``details.generated_tokens``); an endpoint that refuses ``details`` (the first probe is then retried without
it, e.g. the Hugging Face inference toolkit's CPU image) has them estimated as characters / :data:`CHARS_PER_TOKEN`
(``tokens_counted = "estimated"``).

Why threads and not a load-testing library (locust): the same code runs inside a Lambda (the post-deploy check)
and in ``stratos loadtest``, so both report the same figures by the same definitions. A Lambda cannot carry
gevent's monkeypatching (it rewrites the socket and ssl modules boto3 uses, process-wide) nor locust's size and
import time, and locust's statistics round response times above 100 ms to 2 significant figures, coarse beside
a 10 % tolerance. A closed loop of ``concurrency`` threads, each blocked on I/O, is all this needs.

The pass rule (:func:`verdict`): every measured request answered, and p50 <= ``latency.p50_ms`` x (1 +
:data:`LATENCY_TOLERANCE`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import Field

from stratos.payloads import Payload
from stratos.spec import TaskSpec

#: How much slower than ``latency.p50_ms`` a measured p50 may be and still pass, fraction: a stated allowance for the
#: noise of one measurement of a few dozen requests (network, co-tenancy), the issue's figure, not a measured one.
LATENCY_TOLERANCE = 0.10
#: Characters per token of English text before the endpoint's own count is known (OpenAI's tokenizer guidance:
#: "one token generally corresponds to ~4 characters of text for common English text").
CHARS_PER_TOKEN = 4.0
#: Most concurrent clients one check runs (threads in one Lambda, each holding a connection), count.
MAX_LOAD_CONCURRENCY = 128
#: Measured requests per client by default (:func:`default_requests`), and the least in all.
REQUESTS_PER_CLIENT, MIN_REQUESTS = 4, 16
#: Most measured requests one run may send, count.
MAX_REQUESTS = 4 * MAX_LOAD_CONCURRENCY
#: How long the measured phase may keep issuing requests by default, s.
DEFAULT_MAX_SECONDS = 120.0
#: One request's timeout, s: SageMaker real-time InvokeEndpoint answers within 60 s or fails.
REQUEST_TIMEOUT_S = 60.0
#: Distinct error messages kept in a result.
MAX_ERROR_SAMPLES = 3

#: Words of the prompt: common English words, one token each in the catalog's BPE tokenizers.
_WORDS: tuple[str, ...] = tuple(
    " ".join(
        (
            "the quick brown fox jumps over the lazy dog while seven wizards quietly judge a box of jumbled liquor",
            "jugs near the old river bank and every farmer in the green valley counts sheep before the long winter",
            "night falls upon the quiet town where children read books about ships stars and distant mountains",
        )
    ).split(" ")
)


class TransportError(Exception):
    """The endpoint answered an invocation with an error, or did not answer (the message says which)."""


class Transport(Protocol):
    """Sends one invocation body and returns the endpoint's decoded JSON answer.

    Raises:
        TransportError (or any exception): the request failed; its message is recorded as the error.
    """

    def invoke(self, body: Mapping[str, Any]) -> Any: ...


class LoadShape(Payload):
    """What one load test sends (see the module docstring for the bounds)."""

    MAX_BYTES: ClassVar[int] = 512

    concurrency: int = Field(ge=1, le=MAX_LOAD_CONCURRENCY, description="Clients sending at once, count.")
    prompt_tokens: int = Field(ge=1, le=131_072, description="Prompt length to aim for, tokens.")
    output_tokens: int = Field(ge=1, le=32_768, description="max_new_tokens of every request, tokens.")
    requests: int = Field(ge=1, le=MAX_REQUESTS, description="Measured requests at most (warm-up excluded), count.")
    max_seconds: float = Field(gt=0, le=3600, description="How long the measured phase may issue requests, s.")

    @classmethod
    def from_spec(
        cls, spec: TaskSpec, instance_count: int | None = None, max_seconds: float = DEFAULT_MAX_SECONDS
    ) -> LoadShape:
        """The spec's latency shape: ``latency.concurrency`` per instance x the instances
        (``deployment.instance_count`` unless given; SageMaker spreads requests over them), at most
        :data:`MAX_LOAD_CONCURRENCY`; ``prompt_tokens``, ``output_tokens``; :func:`default_requests`."""
        lat = spec.constraints.latency
        instances = spec.deployment.instance_count if instance_count is None else instance_count
        concurrency = min(MAX_LOAD_CONCURRENCY, lat.concurrency * max(1, instances))
        return cls(
            concurrency=concurrency,
            prompt_tokens=lat.prompt_tokens,
            output_tokens=lat.output_tokens,
            requests=default_requests(concurrency),
            max_seconds=max_seconds,
        )


def default_requests(concurrency: int) -> int:
    """Measured requests by default: :data:`REQUESTS_PER_CLIENT` per client, at least :data:`MIN_REQUESTS` (so
    p50 and p90 rest on more than a handful of points), at most :data:`MAX_REQUESTS`."""
    return max(MIN_REQUESTS, min(MAX_REQUESTS, REQUESTS_PER_CLIENT * concurrency))


class LoadTestResult(Payload):
    """What a load test measured (units in the field names; see the module docstring for the definitions)."""

    MAX_BYTES: ClassVar[int] = 6 * 1024

    concurrency: int = Field(ge=1, description="Clients sending at once, count.")
    requests: int = Field(ge=0, description="Measured requests sent (warm-up excluded), count.")
    errors: int = Field(ge=0, description="Measured requests that failed, count.")
    error_samples: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=MAX_ERROR_SAMPLES, description="First distinct error messages."
    )
    p50_ms: float | None = Field(default=None, description="Median latency of the answered requests, ms.")
    p90_ms: float | None = Field(default=None, description="90th percentile latency of the answered requests, ms.")
    mean_ms: float | None = Field(default=None, description="Mean latency of the answered requests, ms.")
    max_ms: float | None = Field(default=None, description="Slowest answered request, ms.")
    tokens_per_s: float | None = Field(
        default=None, description="Generated tokens of the answered requests / the measured wall time, tokens/s."
    )
    output_tokens: int = Field(default=0, ge=0, description="Generated tokens of the answered requests, count.")
    tokens_counted: Literal["reported", "estimated"] = Field(
        default="reported",
        description="reported = the endpoint's details.generated_tokens; estimated = characters / 4.",
    )
    output_tokens_budget: int = Field(ge=1, description="max_new_tokens of every request, tokens.")
    prompt_tokens_target: int = Field(ge=1, description="Prompt length aimed for, tokens.")
    prompt_tokens: int | None = Field(
        default=None, description="The measured prompts' length as the endpoint counted it (None: not reported)."
    )
    prompt_chars: int = Field(ge=0, description="Characters of each measured prompt.")
    wall_s: float = Field(ge=0, description="Measured phase, first send to last answer, s.")
    stopped_by_time: bool = Field(
        default=False, description="The time cap ended the measured phase before all its requests were sent."
    )
    warmup_ms: float | None = Field(default=None, description="The warm-up request's latency, ms (excluded).")
    warmup_error: str | None = Field(default=None, max_length=200, description="Why the warm-up failed, if it did.")

    def describe(self) -> str:
        """One line with the figures, e.g. ``p50 812 ms, p90 901 ms, 315.2 tokens/s (reported) over 16 requests
        at concurrency 4, 0 errors``."""
        if self.p50_ms is None:
            return f"no request answered of {self.requests} at concurrency {self.concurrency}" + _first(self)
        rate = "?" if self.tokens_per_s is None else f"{self.tokens_per_s:,.1f}"
        return (
            f"p50 {self.p50_ms:,.0f} ms, p90 {self.p90_ms or 0:,.0f} ms, {rate} tokens/s ({self.tokens_counted}) "
            f"over {self.requests} requests at concurrency {self.concurrency}, {self.errors} errors" + _first(self)
        )


def _first(result: LoadTestResult) -> str:
    return f" (first: {result.error_samples[0]})" if result.error_samples else ""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation between the closest ranks:
    position ``(n - 1) x q / 100`` of the sorted values (Hyndman & Fan's definition 7, numpy's default and R's
    ``quantile`` type 7). One value is its own every percentile.

    Raises:
        ValueError: ``values`` is empty, or ``q`` is outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def latency_limit_ms(p50_ms: float, tolerance: float = LATENCY_TOLERANCE) -> float:
    """The p50 a measurement may reach and still pass: ``p50_ms x (1 + tolerance)``, ms."""
    return p50_ms * (1.0 + tolerance)


def verdict(result: LoadTestResult, p50_ms: float, tolerance: float = LATENCY_TOLERANCE) -> tuple[bool, str]:
    """Whether ``result`` meets a p50 limit of ``p50_ms`` (with ``tolerance``), and why, with the figures.

    Fails when any measured request failed (an endpoint that cannot answer the spec's shape at its concurrency
    does not meet it, whatever the others' latency), or p50 > :func:`latency_limit_ms`.
    """
    limit = latency_limit_ms(p50_ms, tolerance)
    bound = f"limit {limit:,.0f} ms = latency.p50_ms {p50_ms:,.0f} + {tolerance:.0%}"
    if result.p50_ms is None:
        return False, f"{result.describe()}; {bound}"
    if result.errors:
        return False, f"{result.errors} of {result.requests} requests failed; {result.describe()}; {bound}"
    if result.p50_ms > limit:
        return False, f"measured p50 {result.p50_ms:,.0f} ms > {bound}; {result.describe()}"
    return True, f"measured p50 {result.p50_ms:,.0f} ms <= {bound}; {result.describe()}"


def prompt_text(chars: int, index: int) -> str:
    """``chars`` characters (at least the request number and one word): the request's number ``index``, then
    :data:`_WORDS` from word ``7 x index`` on (cycling), so that no two requests share their first tokens."""
    words = [str(index)]
    length = len(words[0])
    position = 7 * index
    while length < chars or len(words) < 2:
        word = _WORDS[position % len(_WORDS)]
        words.append(word)
        length += len(word) + 1
        position += 1
    return " ".join(words)[: max(chars, len(words[0]) + 1 + len(words[1]))]


def request_body(prompt: str, output_tokens: int, details: bool) -> dict[str, Any]:
    """TGI's invocation body: greedy, ``max_new_tokens`` = ``output_tokens``; with ``details`` the endpoint is
    asked for its token counts (``details`` and ``decoder_input_details``)."""
    parameters: dict[str, Any] = {"max_new_tokens": output_tokens, "do_sample": False}
    if details:
        parameters |= {"details": True, "decoder_input_details": True}
    return {"inputs": prompt, "parameters": parameters}


def read_answer(answer: Any, prompt: str) -> tuple[int, bool, int | None]:
    """``(generated tokens, reported?, prompt tokens or None)`` from an endpoint's answer.

    TGI answers ``[{"generated_text", "details": {"generated_tokens", "prefill": [...]}}]`` (also a bare
    object); without ``details`` the tokens are estimated as the generated text's characters /
    :data:`CHARS_PER_TOKEN` (the prompt is cut off the text first when the server echoes it, as the inference
    toolkit does by default).

    Raises:
        ValueError: the answer has no ``generated_text``.
    """
    item = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(item, dict) or not isinstance(item.get("generated_text"), str):
        raise ValueError(f"unexpected answer shape: {json.dumps(answer)[:120]}")
    details = item.get("details")
    prefill = details.get("prefill") if isinstance(details, dict) else None
    prompt_tokens = len(prefill) if isinstance(prefill, list) and prefill else None
    generated = details.get("generated_tokens") if isinstance(details, dict) else None
    if isinstance(generated, int) and not isinstance(generated, bool) and generated >= 0:
        return generated, True, prompt_tokens
    text = str(item["generated_text"]).removeprefix(prompt)
    return math.ceil(len(text) / CHARS_PER_TOKEN), False, prompt_tokens


class _Outcome:
    __slots__ = ("error", "latency_s", "prompt_tokens", "reported", "tokens")

    def __init__(self) -> None:
        self.latency_s = 0.0
        self.tokens = 0
        self.reported = True
        self.prompt_tokens: int | None = None
        self.error: str | None = None


def _send(transport: Transport, body: Mapping[str, Any], clock: Callable[[], float]) -> _Outcome:
    out = _Outcome()
    started = clock()
    try:
        answer = transport.invoke(body)
        out.latency_s = clock() - started
        out.tokens, out.reported, out.prompt_tokens = read_answer(answer, str(body["inputs"]))
    except Exception as exc:  # any failure of one request is a measured error, never the test's own
        out.latency_s = clock() - started
        out.error = f"{type(exc).__name__}: {exc}"[:200]
    return out


def _chars_for(tokens: int, first: tuple[int, int], second: tuple[int, int | None]) -> int:
    """Characters of prompt text that make ``tokens`` prefill tokens, from two ``(characters, prefill tokens)``
    points of the endpoint's own count: the line through them (``tokens = overhead + characters / rate``); one
    point (the second unknown, or no slope) gives ``characters / tokens`` through the origin."""
    (c1, t1), (c2, t2) = first, second
    if t2 is not None and t1 != t2 and (c1 - c2) / (t1 - t2) > 0:
        rate = (c1 - c2) / (t1 - t2)
        overhead = t1 - c1 / rate
        return round((tokens - overhead) * rate)
    return round(tokens * c1 / t1)


def run_load_test(
    transport: Transport, shape: LoadShape, *, clock: Callable[[], float] = time.perf_counter
) -> LoadTestResult:
    """Warm up, then measure ``shape`` against ``transport`` (see the module docstring).

    Never raises for the endpoint's failures: they are counted in the result (a failed warm-up is recorded as
    ``warmup_error`` and the measured phase still runs).
    """
    target = shape.prompt_tokens
    # Two one-token probes of short prompts (a quarter and an eighth of the target by the 4-characters rule) give
    # two points of the endpoint's prefill count = overhead + characters / rate (the overhead: a chat template, a
    # BOS token); the prompts are sized by the line through them. The first probe also learns whether the
    # endpoint reports details at all (it is retried without them).
    details = True
    probe = prompt_text(max(16, target), 0)
    first = _send(transport, request_body(probe, 1, True), clock)
    if first.error is not None and _send(transport, request_body(probe, 1, False), clock).error is None:
        details = False
    chars = round(target * CHARS_PER_TOKEN)
    if first.error is None and first.prompt_tokens:
        half = prompt_text(len(probe) // 2, 0)
        second = _send(transport, request_body(half, 1, True), clock)
        chars = _chars_for(target, (len(probe), first.prompt_tokens), (len(half), second.prompt_tokens))
    chars = max(1, chars)
    warmup = _send(transport, request_body(prompt_text(chars, 0), shape.output_tokens, details), clock)

    outcomes: list[_Outcome] = []
    lock = threading.Lock()
    issued = 0
    stopped_by_time = False
    start = clock()

    def client() -> None:
        nonlocal issued, stopped_by_time
        while True:
            with lock:
                if issued >= shape.requests:
                    return
                if clock() - start >= shape.max_seconds:
                    stopped_by_time = True
                    return
                issued += 1
                index = issued
            outcome = _send(transport, request_body(prompt_text(chars, index), shape.output_tokens, details), clock)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client, name=f"load-{i}", daemon=True) for i in range(shape.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = clock() - start
    answered = [o for o in outcomes if o.error is None]
    errors: list[str] = []
    for o in outcomes:
        if o.error is not None and o.error not in errors and len(errors) < MAX_ERROR_SAMPLES:
            errors.append(o.error)
    latencies_ms = [1000.0 * o.latency_s for o in answered]
    tokens = sum(o.tokens for o in answered)
    prompts = [o.prompt_tokens for o in answered if o.prompt_tokens]
    return LoadTestResult(
        concurrency=shape.concurrency,
        requests=len(outcomes),
        errors=len(outcomes) - len(answered),
        error_samples=errors,
        p50_ms=percentile(latencies_ms, 50) if latencies_ms else None,
        p90_ms=percentile(latencies_ms, 90) if latencies_ms else None,
        mean_ms=sum(latencies_ms) / len(latencies_ms) if latencies_ms else None,
        max_ms=max(latencies_ms) if latencies_ms else None,
        tokens_per_s=tokens / wall if answered and wall > 0 else None,
        output_tokens=tokens,
        tokens_counted="reported" if all(o.reported for o in answered) else "estimated",
        output_tokens_budget=shape.output_tokens,
        prompt_tokens_target=shape.prompt_tokens,
        prompt_tokens=round(sum(prompts) / len(prompts)) if prompts else None,
        prompt_chars=chars,
        wall_s=wall,
        stopped_by_time=stopped_by_time,
        warmup_ms=None if warmup.error else 1000.0 * warmup.latency_s,
        warmup_error=warmup.error,
    )


class SageMakerRuntimeTransport:
    """:class:`Transport` over ``sagemaker-runtime`` InvokeEndpoint (JSON in and out).

    Its boto3 client is its own (created on first use): no SDK retries (a retried request would hide a failure
    and stretch a latency), :data:`REQUEST_TIMEOUT_S` + 10 s to read an answer, and a connection pool as large
    as the load's concurrency.

    Args:
        endpoint_name: the SageMaker endpoint.
        region: its region (default: the process's).
        pool: connections kept, at least the clients sending at once.
        client: a boto3 ``sagemaker-runtime`` client to use instead (tests: botocore's Stubber).
    """

    def __init__(self, endpoint_name: str, region: str | None = None, pool: int = 10, client: Any = None) -> None:
        self.endpoint_name = endpoint_name
        self._region = region
        self._pool = max(1, pool)
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 client (created once, thread-safe)."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=5,
                    read_timeout=REQUEST_TIMEOUT_S + 10,
                    max_pool_connections=self._pool,
                )
                self._client = boto3.session.Session().client(
                    "sagemaker-runtime", region_name=self._region, config=config
                )
            return self._client

    def invoke(self, body: Mapping[str, Any]) -> Any:
        """InvokeEndpoint with ``body``; the decoded JSON answer.

        Raises:
            TransportError: the endpoint refused or failed the request (error code and message; a ModelError's
                own status), or no answer came in time.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(dict(body)).encode("utf-8"),
            )
            raw = response["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("OriginalStatusCode")
            where = f" (container status {status})" if status else ""
            raise TransportError(f"{error.get('Code', 'ClientError')}{where}: {error.get('Message', exc)}") from exc
        except BotoCoreError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TransportError(f"the answer is not JSON: {raw[:120]!r}") from exc
