"""External teachers: a Bedrock model or an existing SageMaker endpoint, called from the training job.

A teacher the job cannot host is named by its source string (the ``teacher`` hyperparameter):

======================================  ===================================================================
``bedrock:<model id>``                  a Bedrock base model id (``amazon.nova-lite-v1:0``), a system
                                        inference-profile id (``us.anthropic.claude-3-5-haiku-20241022-v1:0``)
                                        or a Bedrock ARN (foundation model, inference profile, provisioned,
                                        custom or imported model); called with the Converse API; text only
``sagemaker-endpoint:<endpoint name>``  an existing real-time endpoint in the TGI (Hugging Face LLM) shape;
                                        text, plus top-k log-probabilities when the container returns them
======================================  ===================================================================

Any other source is a Hugging Face model the job loads itself (:mod:`stratos_train.models`).

How the teachers are called (:class:`ExternalTeacher`):

* **Greedy decoding**: temperature 0 (Bedrock) or ``do_sample: false`` (TGI), so a request has one answer and
  the answer can be cached.
* **Bounded concurrency**: one :class:`~concurrent.futures.ThreadPoolExecutor` of ``concurrency`` workers
  (default :data:`DEFAULT_CONCURRENCY`) per :meth:`ExternalTeacher.generate` call, over one shared botocore
  client (low-level clients are thread-safe); replies come back in the order of the prompts.
* **Retries**: botocore's ``adaptive`` retry mode (exponential backoff with jitter plus a client-side rate
  limiter that slows down after throttling), :data:`DEFAULT_MAX_ATTEMPTS` attempts per call. A call that still
  fails becomes a reply with stop ``error`` and the message; one failing prompt never fails the batch.
* **Response cache** (:class:`ReplyCache`): one JSON file per reply under the cache folder, keyed by the
  sha256 of the canonical request, so a resumed or re-run job never pays for the same answer twice.
* **Usage** (:class:`TeacherUsage`): calls, cache hits, retries, throttled attempts, tokens and US dollars
  actually spent, for ``metrics.json``.
* **Reachability** (:meth:`ExternalTeacher.check_reachable`): a cheap check for the job's first step, so an
  unreachable teacher fails before training, never mid-training.

boto3 ships with the AWS deep-learning-container base image of the training image (the SageMaker training
toolkit depends on it), so ``requirements.txt`` does not pin it; it is imported only when an external teacher
is built, and a job with a Hugging Face teacher never imports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from stratos_contract.errors import StratosError
from stratos_train.tasks.base import Message

logger = logging.getLogger(__name__)

TeacherKind = Literal["bedrock", "sagemaker-endpoint"]
TEACHER_KINDS: tuple[TeacherKind, ...] = get_args(TeacherKind)

StopReason = Literal["end", "max_tokens", "filtered", "error"]
"""Why a reply ended: ``end`` (the model finished: end of turn, end-of-sequence token or a stop sequence),
``max_tokens`` (``max_new_tokens`` reached; the text so far is kept), ``filtered`` (a content filter or
guardrail withheld the answer; the text is ``""``) or ``error`` (the call failed after its retries; the text is
``""`` and ``detail`` says why)."""
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)

#: Worker threads calling the teacher at once per :meth:`ExternalTeacher.generate`. 4 keeps a 2-core job's
#: threads idle-waiting on the network, not competing with training, and stays under Bedrock's default
#: on-demand request quotas for small models; raise it for a large endpoint or a raised quota.
DEFAULT_CONCURRENCY = 4
#: Attempts per call (the first plus retries) under botocore's adaptive retry mode. After a throttling error
#: botocore waits a random 0..min(2^(n-1), 20) s before retry n (botocore.retries.standard.ExponentialBackoff):
#: 10 attempts span at most 111 s (about 55 s expected), long enough for a per-minute token or request quota
#: (Bedrock's unit) to refill once; other retryable errors back off 20x faster.
DEFAULT_MAX_ATTEMPTS = 10
#: Seconds botocore waits for an answer. A generation answers only when it ends: 300 s covers a few thousand
#: tokens at tens of tokens/s (SageMaker real-time endpoints themselves give up after 60 s by default).
DEFAULT_READ_TIMEOUT_S = 300.0
#: Seconds to open a connection (botocore's own default, written out so it is visible).
DEFAULT_CONNECT_TIMEOUT_S = 60.0
#: Bump when the reply or request shapes change: older cache files are then never read (2: token ids in
#: ``tokens`` and ``top_logprobs``).
CACHE_FORMAT = 2

HYPERPARAMETER = "teacher"
"""The hyperparameter a teacher source comes from (named in every :class:`TeacherError` about a source)."""

# SageMaker's EndpointName rule (CreateEndpoint API): 1..63 characters, alphanumerics and single or repeated
# hyphens, starting and ending with an alphanumeric.
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# A Bedrock model id or system inference-profile id: provider.model[-version][:n], optionally with a geography
# prefix (us., eu., apac., global.); the Converse API's own pattern admits [a-zA-Z0-9-:.]+.
_BEDROCK_MODEL_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*(\.[a-zA-Z0-9:-]+)+")
# Bedrock ARNs a Converse call takes as a model (the Converse API's ConversationalModelId pattern, grouped).
_BEDROCK_ARN = re.compile(
    r"arn:aws(-[a-z]+)*:bedrock:(?P<region>[a-z0-9-]{1,20}):(?P<account>[0-9]{12})?:"
    r"(?P<resource>foundation-model|inference-profile|application-inference-profile|provisioned-model|"
    r"custom-model|custom-model-deployment|imported-model|prompt-router|default-prompt-router)/[a-zA-Z0-9:./-]+"
)
#: TGI's ``details.finish_reason`` -> :data:`StopReason`.
_TGI_STOP: dict[str, StopReason] = {"eos_token": "end", "stop_sequence": "end", "length": "max_tokens"}
#: Converse ``stopReason`` -> :data:`StopReason`; any other (``tool_use``, ``malformed_model_output``,
#: ``model_context_window_exceeded``, ...) is an ``error`` naming it.
_CONVERSE_STOP: dict[str, StopReason] = {
    "end_turn": "end",
    "stop_sequence": "end",
    "max_tokens": "max_tokens",
    "content_filtered": "filtered",
    "guardrail_intervened": "filtered",
}
#: EndpointStatus values in which a SageMaker endpoint answers invocations (it keeps serving its current
#: variants while it scales or updates, per the DescribeEndpoint API reference).
SERVING_ENDPOINT_STATUSES = frozenset({"InService", "Updating", "SystemUpdating"})


class TeacherError(StratosError, ValueError):
    """An external teacher is misnamed, misconfigured or unreachable.

    Raised by :func:`parse_teacher_source` (naming the ``teacher`` hyperparameter and the reason), by the
    teacher constructors (a bad setting) and by :meth:`ExternalTeacher.check_reachable`. Inside the training
    job it becomes the job's ``output/failure`` reason.
    """


@dataclass(frozen=True)
class ExternalTeacherRef:
    """A parsed external teacher source.

    Attributes:
        kind: ``bedrock`` or ``sagemaker-endpoint``.
        target: the Bedrock model id / inference-profile id / ARN, or the endpoint name.
        source: the source string as given (``bedrock:amazon.nova-lite-v1:0``).
    """

    kind: TeacherKind
    target: str
    source: str

    @property
    def arn_region(self) -> str | None:
        """The region a Bedrock ARN names (None for a model id or an endpoint name)."""
        match = _BEDROCK_ARN.fullmatch(self.target) if self.kind == "bedrock" else None
        return match["region"] if match else None


def parse_teacher_source(source: str) -> ExternalTeacherRef | None:
    """The external teacher ``source`` names, or None when it is a Hugging Face source (models.py).

    Forms: ``bedrock:<model id | inference-profile id | ARN>`` and ``sagemaker-endpoint:<endpoint name>``
    (module docstring). The prefix is matched exactly (lower case).

    Raises:
        TeacherError: the prefix is one of these but what follows is not a valid id, ARN or endpoint name;
            the message names the ``teacher`` hyperparameter, the value and the rule.
    """
    kind, sep, target = source.partition(":")
    if not sep or kind not in TEACHER_KINDS:
        return None
    if kind == "bedrock":
        if not target:
            raise TeacherError(f"{HYPERPARAMETER}: {source!r}: give a Bedrock model id after 'bedrock:'")
        if target.startswith("arn:"):
            if not _BEDROCK_ARN.fullmatch(target):
                raise TeacherError(
                    f"{HYPERPARAMETER}: {source!r}: not a Bedrock model ARN (arn:aws:bedrock:<region>:"
                    "[<account>]:<foundation-model|inference-profile|application-inference-profile|"
                    "provisioned-model|custom-model|imported-model|...>/<id>)"
                )
        elif len(target) > 2048 or not _BEDROCK_MODEL_ID.fullmatch(target):
            raise TeacherError(
                f"{HYPERPARAMETER}: {source!r}: not a Bedrock model id (provider.model[:version], e.g. "
                "amazon.nova-lite-v1:0 or us.anthropic.claude-3-5-haiku-20241022-v1:0; letters, digits, '-', "
                "'.' and ':'), inference-profile id or ARN"
            )
        return ExternalTeacherRef(kind="bedrock", target=target, source=source)
    if not _ENDPOINT_NAME.fullmatch(target):
        raise TeacherError(
            f"{HYPERPARAMETER}: {source!r}: not a SageMaker endpoint name (1-63 characters: letters, digits "
            "and hyphens, starting and ending with a letter or digit)"
        )
    return ExternalTeacherRef(kind="sagemaker-endpoint", target=target, source=source)


TokenLogprob = tuple[int, str, float]
"""One token as TGI reports it: ``(token id, token text, natural-log probability)``."""
TopLogprobs = tuple[tuple[TokenLogprob, ...], ...]
"""Per generated token, the teacher's top-k alternatives, most likely first (TGI's ``details.top_tokens``)."""


@dataclass(frozen=True)
class TeacherReply:
    """One teacher answer.

    Attributes:
        text: the generated text (``""`` when ``stop`` is ``filtered`` or ``error``).
        stop: why it ended (:data:`StopReason`).
        input_tokens: prompt tokens as the provider counted them (Bedrock ``usage.inputTokens``; TGI: the
            length of ``details.prefill``, chat template and BOS included); 0 when not reported.
        output_tokens: generated tokens (Bedrock ``usage.outputTokens``; TGI ``details.generated_tokens``, the
            stop token included); 0 when not reported.
        top_logprobs: per generated token, the top-k ``(id, text, logprob)`` (TGI with ``top_k`` > 0 and a
            container that returns them); None otherwise.
        tokens: the generated tokens ``(id, text, logprob)``, the stop token included (TGI's ``details.tokens``);
            None when the answer does not list them.
        cached: True when the reply came from the :class:`ReplyCache` (no call was made for it).
        detail: ``error``: the error code and message; ``filtered``: the provider's stop reason; else ``""``.
    """

    text: str
    stop: StopReason
    input_tokens: int = 0
    output_tokens: int = 0
    top_logprobs: TopLogprobs | None = None
    tokens: tuple[TokenLogprob, ...] | None = None
    cached: bool = False
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (``cached`` left out: it describes a read, not the reply)."""
        return {
            "text": self.text,
            "stop": self.stop,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "top_logprobs": None
            if self.top_logprobs is None
            else [[list(alternative) for alternative in token] for token in self.top_logprobs],
            "tokens": None if self.tokens is None else [list(token) for token in self.tokens],
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, cached: bool = False) -> TeacherReply:
        """The reply :meth:`to_json` wrote.

        Raises:
            KeyError, TypeError, ValueError: ``data`` is not such a dict.
        """
        stop = data["stop"]
        if stop not in STOP_REASONS:
            raise ValueError(f"unknown stop {stop!r}")
        raw = data["top_logprobs"]
        top = None if raw is None else tuple(tuple(_token_logprob(*alt) for alt in token) for token in raw)
        raw_tokens = data.get("tokens")
        tokens = None if raw_tokens is None else tuple(_token_logprob(*token) for token in raw_tokens)
        return cls(
            text=str(data["text"]),
            stop=stop,
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            top_logprobs=top,
            tokens=tokens,
            cached=cached,
            detail=str(data.get("detail", "")),
        )


def _token_logprob(token_id: Any, text: Any, logprob: Any) -> TokenLogprob:
    """One ``(id, text, logprob)``, typed (``ValueError``/``TypeError`` when it is not one)."""
    if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
        raise ValueError(f"token id {token_id!r} is not a non-negative integer")
    return int(token_id), str(text), float(logprob)


@dataclass
class TeacherUsage:
    """What the teacher cost, for ``metrics.json`` (:meth:`as_dict`). Thread-safe: workers record into it.

    Attributes:
        input_usd_per_1k: price of 1,000 input tokens, USD (the caller's figure: Bedrock on-demand prices from
            the Pricing API or the planner's snapshot; 0 = not priced, e.g. an endpoint billed by the hour).
        output_usd_per_1k: price of 1,000 output tokens, USD (as above).
        calls: API calls made (``converse`` / ``invoke_endpoint``, each counted once however many attempts its
            retries took; the reachability check's call included).
        cache_hits: replies served from the cache (no call, no tokens, no money).
        retries: retried attempts, summed over calls (botocore's ``ResponseMetadata.RetryAttempts``).
        throttled: attempts answered with a throttling error (botocore's own throttling detector, on its
            ``needs-retry`` event; only counted on a client this module built).
        input_tokens: prompt tokens of the calls made, as the provider counted them (cache hits excluded).
        output_tokens: generated tokens of the calls made (cache hits excluded).
        replies_by_stop: replies returned by :meth:`ExternalTeacher.generate`, by stop reason (cache hits
            included; the reachability check excluded).
    """

    input_usd_per_1k: float = 0.0
    output_usd_per_1k: float = 0.0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    replies_by_stop: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STOP_REASONS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def usd(self) -> float:
        """Money spent: input_tokens / 1000 x input_usd_per_1k + output_tokens / 1000 x output_usd_per_1k."""
        return self.input_tokens / 1000 * self.input_usd_per_1k + self.output_tokens / 1000 * self.output_usd_per_1k

    def record_call(self, reply: TeacherReply, *, retries: int, as_reply: bool = True) -> None:
        """Count one API call: its tokens, its retries and (``as_reply``) its reply's stop reason."""
        with self._lock:
            self.calls += 1
            self.retries += retries
            self.input_tokens += reply.input_tokens
            self.output_tokens += reply.output_tokens
            if as_reply:
                self.replies_by_stop[reply.stop] += 1

    def record_hit(self, reply: TeacherReply) -> None:
        """Count one reply served from the cache."""
        with self._lock:
            self.cache_hits += 1
            self.replies_by_stop[reply.stop] += 1

    def record_throttled(self) -> None:
        """Count one attempt answered with a throttling error."""
        with self._lock:
            self.throttled += 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe snapshot: every attribute above plus ``usd`` (rounded to 1e-6 USD)."""
        with self._lock:
            return {
                "calls": self.calls,
                "cache_hits": self.cache_hits,
                "retries": self.retries,
                "throttled": self.throttled,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "replies_by_stop": dict(self.replies_by_stop),
                "input_usd_per_1k": self.input_usd_per_1k,
                "output_usd_per_1k": self.output_usd_per_1k,
                "usd": round(self.usd, 6),
            }


def sum_usage(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Several :meth:`TeacherUsage.as_dict` snapshots added up (e.g. one per training job of a run): the counts,
    the tokens and ``usd`` summed (``usd`` rounded to 1e-6), ``replies_by_stop`` summed per stop reason, the
    prices of the last snapshot (jobs of one run share them). No snapshot: all zeros."""
    total: dict[str, Any] = TeacherUsage().as_dict()
    for snapshot in snapshots:
        for key in ("calls", "cache_hits", "retries", "throttled", "input_tokens", "output_tokens"):
            total[key] += int(snapshot.get(key, 0))
        total["usd"] = round(total["usd"] + float(snapshot.get("usd", 0.0)), 6)
        for reason, count in (snapshot.get("replies_by_stop") or {}).items():
            total["replies_by_stop"][reason] = total["replies_by_stop"].get(reason, 0) + int(count)
        total["input_usd_per_1k"] = float(snapshot.get("input_usd_per_1k", 0.0))
        total["output_usd_per_1k"] = float(snapshot.get("output_usd_per_1k", 0.0))
    return total


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no whitespace, UTF-8 text kept (the cache key's input)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ReplyCache:
    """Teacher replies on disk, one JSON file per request, keyed by content hash.

    The key is the sha256 (hex) of :func:`canonical_json` over ``{"format", "kind", "target", "request"}``:
    the teacher kind, the model id or endpoint name, and the full request body (messages, ``max_new_tokens``
    / ``maxTokens``, top-k, decoding settings), so any change to what is asked is a different key. The region
    is not in the key (the same model answers the same everywhere). A file is
    ``<directory>/<key[:2]>/<key>.json``, written to a temporary file in the same folder then
    ``os.replace``-d, so a reader (another worker, a resumed job) never sees half a file.

    What is cached: ``end``, ``max_tokens`` and ``filtered`` replies (a filter's verdict on a greedy request
    is the answer; asking again pays again for the same verdict). ``error`` replies are never cached: a
    throttle, a timeout or an endpoint fault may pass, and the next run should ask again.

    An endpoint redeployed under the same name with another model keeps its old answers here: clear the
    folder (or name the endpoint anew) when the model behind a name changes.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(kind: str, target: str, request: Mapping[str, Any]) -> str:
        """The sha256 hex digest naming ``request`` to ``kind``/``target`` (class docstring)."""
        material = {"format": CACHE_FORMAT, "kind": kind, "target": target, "request": request}
        return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        """``<directory>/<key[:2]>/<key>.json``."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> TeacherReply | None:
        """The stored reply (``cached=True``), or None when absent or unreadable (a damaged file is a miss
        and is overwritten by the next :meth:`put`)."""
        path = self.path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != CACHE_FORMAT or data.get("key") != key:
                return None
            return TeacherReply.from_json(data["reply"], cached=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("teacher cache: ignoring unreadable %s (%s)", path, exc)
            return None

    def put(self, key: str, kind: str, target: str, request: Mapping[str, Any], reply: TeacherReply) -> bool:
        """Store ``reply`` under ``key`` (with the request, for people reading the folder); returns whether it
        was stored (``error`` replies are not: class docstring)."""
        if reply.stop == "error":
            return False
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": CACHE_FORMAT,
            "key": key,
            "kind": kind,
            "target": target,
            "request": request,
            "reply": reply.to_json(),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True


class ExternalTeacher(ABC):
    """A teacher behind an AWS API: greedy generation with bounded concurrency, adaptive retries, a reply cache
    and usage accounting (module docstring).

    Args:
        target: the Bedrock model id / ARN, or the endpoint name.
        region: the AWS region to call (required: the job's region; a Bedrock ARN must name the same one).
        concurrency: calls in flight at most, >= 1 (default :data:`DEFAULT_CONCURRENCY`).
        cache_dir: the :class:`ReplyCache` folder (e.g. under the job's checkpoint folder, which SageMaker syncs
            to the run's S3 prefix); None = no cache.
        input_usd_per_1k: USD per 1,000 input tokens for :class:`TeacherUsage` (0 = not priced).
        output_usd_per_1k: USD per 1,000 output tokens (0 = not priced).
        max_attempts: attempts per call under adaptive retries, >= 1 (default :data:`DEFAULT_MAX_ATTEMPTS`).
        read_timeout_s: seconds to wait for an answer (default :data:`DEFAULT_READ_TIMEOUT_S`).
        client: the runtime client to call (None: built lazily with :meth:`client_config`).

    Raises:
        TeacherError: a setting is out of range.
    """

    kind: ClassVar[TeacherKind]
    #: The boto3 service of the runtime client (``bedrock-runtime`` / ``sagemaker-runtime``).
    service: ClassVar[str]
    #: The runtime operation each prompt is one call of, as botocore names it in events.
    operation: ClassVar[str]

    def __init__(
        self,
        target: str,
        *,
        region: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        cache_dir: str | os.PathLike[str] | None = None,
        input_usd_per_1k: float = 0.0,
        output_usd_per_1k: float = 0.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        if not region:
            raise TeacherError(f"{self.kind} teacher {target!r}: give the AWS region to call")
        if concurrency < 1:
            raise TeacherError(f"concurrency: must be >= 1 (got {concurrency})")
        if max_attempts < 1:
            raise TeacherError(f"max_attempts: must be >= 1 (got {max_attempts})")
        if input_usd_per_1k < 0 or output_usd_per_1k < 0:
            raise TeacherError(
                f"input_usd_per_1k / output_usd_per_1k: must be >= 0 (got {input_usd_per_1k}, {output_usd_per_1k})"
            )
        if read_timeout_s <= 0:
            raise TeacherError(f"read_timeout_s: must be > 0 (got {read_timeout_s})")
        self.target = target
        self.region = region
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.read_timeout_s = read_timeout_s
        self.cache = ReplyCache(cache_dir) if cache_dir is not None else None
        self.usage = TeacherUsage(input_usd_per_1k=input_usd_per_1k, output_usd_per_1k=output_usd_per_1k)
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def source(self) -> str:
        """The source string naming this teacher (``<kind>:<target>``)."""
        return f"{self.kind}:{self.target}"

    def client_config(self) -> Any:
        """The ``botocore.config.Config`` of every client this teacher builds: the region, adaptive retries with
        ``max_attempts`` attempts in all (the first included), a connection pool as large as ``concurrency``
        (never below botocore's 10), and the timeouts."""
        from botocore.config import Config

        return Config(
            region_name=self.region,
            # total_max_attempts counts the first attempt; botocore's max_attempts key would count retries only.
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            max_pool_connections=max(10, self.concurrency),
            connect_timeout=DEFAULT_CONNECT_TIMEOUT_S,
            read_timeout=self.read_timeout_s,
        )

    def _build_client(self, service: str) -> Any:
        """A boto3 client of ``service`` with :meth:`client_config`, whose throttled attempts are counted."""
        import boto3
        from botocore.retries import standard

        client = boto3.session.Session().client(service, region_name=self.region, config=self.client_config())
        detector = standard.ThrottlingErrorDetector(retry_event_adapter=standard.RetryEventAdapter())

        def count_throttled(**kwargs: Any) -> None:
            # needs-retry fires after every attempt; returning None leaves the decision to the retry handler.
            if detector.is_throttling_error(**kwargs):
                self.usage.record_throttled()

        client.meta.events.register(f"needs-retry.{client.meta.service_model.service_id.hyphenize()}", count_throttled)
        return client

    @property
    def client(self) -> Any:
        """The runtime client (built on first use; shared by the worker threads)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client(self.service)
            return self._client

    @abstractmethod
    def request_body(self, messages: Sequence[Message], max_new_tokens: int) -> dict[str, Any]:
        """The JSON-safe request for one prompt (the cache key covers all of it).

        Raises:
            TeacherError: ``messages`` cannot be sent (empty, an unknown role).
        """

    @abstractmethod
    def _invoke(self, request: Mapping[str, Any]) -> tuple[TeacherReply, int]:
        """Make one call; returns the reply and the retried attempts it took. API and transport errors become
        an ``error`` reply, never an exception."""

    @abstractmethod
    def check_reachable(self) -> None:
        """Check cheaply that the teacher answers (subclasses say how).

        Raises:
            TeacherError: it does not, with what to fix.
        """

    def generate(self, prompts: Sequence[Sequence[Message]], *, max_new_tokens: int) -> list[TeacherReply]:
        """Greedy replies to ``prompts`` (chat messages each), in the order of the prompts.

        Cache hits are answered without a call; the misses are called ``concurrency`` at a time; every reply
        is counted in :attr:`usage`. Identical prompts in one batch are each called (no de-duplication).

        Args:
            prompts: one list of ``{"role", "content"}`` messages per prompt.
            max_new_tokens: generated tokens at most per reply, >= 1.

        Raises:
            TeacherError: ``max_new_tokens`` < 1 or a prompt cannot be sent (:meth:`request_body`).
        """
        if max_new_tokens < 1:
            raise TeacherError(f"max_new_tokens: must be >= 1 (got {max_new_tokens})")
        requests = [self.request_body(messages, max_new_tokens) for messages in prompts]
        keys = [ReplyCache.key(self.kind, self.target, r) if self.cache else "" for r in requests]
        replies: list[TeacherReply | None] = [None] * len(requests)
        misses: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache else None
            if hit is None:
                misses.append(i)
            else:
                self.usage.record_hit(hit)
                replies[i] = hit

        def call(i: int) -> TeacherReply:
            reply, retries = self._invoke(requests[i])
            self.usage.record_call(reply, retries=retries)
            if self.cache:
                self.cache.put(keys[i], self.kind, self.target, requests[i], reply)
            return reply

        if misses:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(misses))) as pool:
                for i, reply in zip(misses, pool.map(call, misses), strict=True):
                    replies[i] = reply
        logger.info(
            "teacher %s: %d prompts, %d from the cache, %d called (%d throttled attempts so far; %s)",
            self.source,
            len(requests),
            len(requests) - len(misses),
            len(misses),
            self.usage.throttled,
            f"{self.usage.input_tokens} in / {self.usage.output_tokens} out tokens, {self.usage.usd:.4f} USD so far",
        )
        return [r for r in replies if r is not None]

    def texts(self, prompts: Sequence[Sequence[Message]], *, max_new_tokens: int) -> list[str]:
        """Only the texts of :meth:`generate` (``""`` for ``filtered`` and ``error`` replies, which a task's
        verifier rejects): the shape of ``teacher_generate`` in :func:`stratos_train.modes.build_injection_set`
        once ``max_new_tokens`` is bound."""
        return [reply.text for reply in self.generate(prompts, max_new_tokens=max_new_tokens)]


def _error_reply(exc: Exception) -> tuple[TeacherReply, int]:
    """An ``error`` reply for a botocore ``ClientError`` (its code, message and retries) or any other
    exception (its type and message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping) and "Error" in response:
        error = response.get("Error") or {}
        code = str(error.get("Code", "")) or type(exc).__name__
        message = str(error.get("Message", "")) or str(exc)
        if code == "ModelError":  # sagemaker-runtime: the container answered with a non-2xx status
            status = response.get("OriginalStatusCode")
            message = f"the container answered {status}: {response.get('OriginalMessage') or message}"
        retries = int((response.get("ResponseMetadata") or {}).get("RetryAttempts", 0))
        return TeacherReply(text="", stop="error", detail=f"{code}: {message}"), retries
    return TeacherReply(text="", stop="error", detail=f"{type(exc).__name__}: {exc}"), 0


def _retries(response: Mapping[str, Any]) -> int:
    return int((response.get("ResponseMetadata") or {}).get("RetryAttempts", 0))


def _check_roles(messages: Sequence[Message]) -> None:
    if not messages:
        raise TeacherError("a prompt has no messages")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant"):
            raise TeacherError(f"message role {message.get('role')!r}: must be system, user or assistant")


class BedrockTeacher(ExternalTeacher):
    """A Bedrock model through the Converse API (``bedrock-runtime`` ``converse``); text only.

    A request: ``system`` = the system messages' texts (one block each), ``messages`` = the user/assistant
    turns in Converse content-block form (consecutive turns of one role merged into one message of several
    text blocks, as Converse wants roles to alternate), ``inferenceConfig`` = ``{"maxTokens":
    max_new_tokens, "temperature": 0}``. The reply's text joins the ``text`` blocks of ``output.message``
    (reasoning blocks are left out); ``stopReason`` maps to :data:`StopReason` (``end_turn`` /
    ``stop_sequence`` -> end, ``max_tokens`` -> max_tokens with the text kept, ``content_filtered`` /
    ``guardrail_intervened`` -> filtered with the text dropped, anything else -> error); tokens come from
    ``usage.inputTokens`` / ``usage.outputTokens``.

    IAM: ``bedrock:InvokeModel`` on the model (for an inference profile: on the profile and the models it
    routes to).
    """

    kind: ClassVar[TeacherKind] = "bedrock"
    service: ClassVar[str] = "bedrock-runtime"
    operation: ClassVar[str] = "Converse"

    def __init__(self, target: str, *, region: str, **kwargs: Any) -> None:
        super().__init__(target, region=region, **kwargs)
        arn_region = ExternalTeacherRef("bedrock", target, f"bedrock:{target}").arn_region
        if arn_region is not None and arn_region != region:
            raise TeacherError(f"teacher bedrock:{target}: the ARN is in {arn_region}, the job calls {region}")

    def request_body(self, messages: Sequence[Message], max_new_tokens: int) -> dict[str, Any]:
        _check_roles(messages)
        system = [{"text": m["content"]} for m in messages if m["role"] == "system"]
        turns: list[dict[str, Any]] = []
        for message in messages:
            if message["role"] == "system":
                continue
            if turns and turns[-1]["role"] == message["role"]:
                turns[-1]["content"].append({"text": message["content"]})
            else:
                turns.append({"role": message["role"], "content": [{"text": message["content"]}]})
        if not turns:
            raise TeacherError("a prompt has only system messages: Converse needs a user message")
        body: dict[str, Any] = {
            "messages": turns,
            "inferenceConfig": {"maxTokens": max_new_tokens, "temperature": 0},
        }
        if system:
            body["system"] = system
        return body

    def _invoke(self, request: Mapping[str, Any]) -> tuple[TeacherReply, int]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.converse(modelId=self.target, **request)
        except (ClientError, BotoCoreError) as exc:
            return _error_reply(exc)
        return self._reply(response), _retries(response)

    @staticmethod
    def _reply(response: Mapping[str, Any]) -> TeacherReply:
        """The :class:`TeacherReply` of one Converse response (class docstring)."""
        usage = response.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
        reason = str(response.get("stopReason", ""))
        stop = _CONVERSE_STOP.get(reason)
        text, detail = "", ""
        if stop is None:
            stop, detail = "error", f"stopReason {reason!r}"
        elif stop == "filtered":
            detail = reason
        else:
            blocks = ((response.get("output") or {}).get("message") or {}).get("content") or []
            text = "".join(block["text"] for block in blocks if "text" in block)
        return TeacherReply(text=text, stop=stop, input_tokens=tokens_in, output_tokens=tokens_out, detail=detail)

    def check_reachable(self) -> None:
        """One ``converse`` with ``maxTokens`` 1 (a few tokens, counted in :attr:`usage`): it checks at once that
        the model id exists in the region, that the account has access to it, and that the job's role may
        invoke it (``bedrock:InvokeModel``, the only permission the job has). ``get_foundation_model`` would
        check neither access nor the role's permission, and needs ``bedrock:GetFoundationModel`` besides. A
        throttled check passes (the model is there; the retries will pace the calls).

        Raises:
            TeacherError: any other failure, with the code and message.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        request = {
            "messages": [{"role": "user", "content": [{"text": "Reply with OK."}]}],
            "inferenceConfig": {"maxTokens": 1, "temperature": 0},
        }
        try:
            response = self.client.converse(modelId=self.target, **request)
        except ClientError as exc:
            reply, retries = _error_reply(exc)
            self.usage.record_call(reply, retries=retries, as_reply=False)
            if exc.response.get("Error", {}).get("Code") == "ThrottlingException":
                logger.warning("teacher %s: reachable but throttled at the check (%s)", self.source, reply.detail)
                return
            raise TeacherError(f"teacher {self.source} is not reachable in {self.region}: {reply.detail}") from exc
        except BotoCoreError as exc:
            raise TeacherError(f"teacher {self.source} is not reachable in {self.region}: {exc}") from exc
        self.usage.record_call(self._reply(response), retries=_retries(response), as_reply=False)


PromptFormat = Literal["chat", "text"]


def render_plain_chat(messages: Sequence[Message]) -> str:
    """The ``text`` prompt format: each message as ``<Role>: <content>`` (``System``, ``User``, ``Assistant``),
    separated by blank lines, ending with ``Assistant:`` for the reply::

        System: You solve maths problems.

        User: What is 2 + 3?

        Assistant:

    Raises:
        TeacherError: ``messages`` is empty or has an unknown role.
    """
    _check_roles(messages)
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


#: The stop sequence of the ``text`` format: the model starting the next user turn.
PLAIN_CHAT_STOP = "\n\nUser:"


class SageMakerEndpointTeacher(ExternalTeacher):
    """An existing SageMaker real-time endpoint in the TGI shape (``sagemaker-runtime`` ``invoke_endpoint``).

    A request (JSON): ``{"inputs": ..., "parameters": {"max_new_tokens": n, "do_sample": false, "details":
    true, "decoder_input_details": true[, "top_n_tokens": k][, "stop": [...]]}}``; ``decoder_input_details``
    makes TGI list the prompt's tokens (``details.prefill``) so the input tokens can be counted (it costs TGI
    a prompt log-probability pass at prefill); ``top_n_tokens`` is sent only when ``top_k`` > 0. ``inputs``
    follows ``prompt_format``:

    * ``chat`` (default): the messages themselves, ``[{"role", "content"}, ...]``; the endpoint renders them
      with the model's own chat template. Stratos's local endpoint server accepts this
      (``stratos_cli.local.serving.request``: ``inputs`` may be a list of chat messages); a stock TGI
      container takes only a string: use ``text`` there.
    * ``text``: :func:`render_plain_chat`, with :data:`PLAIN_CHAT_STOP` as a stop sequence (cut from the
      text); any TGI ``generate`` endpoint takes it.

    The answer, ``[{"generated_text", "details"}]`` (or the object alone): the text; ``details.finish_reason``
    -> stop (``eos_token`` / ``stop_sequence`` -> end, ``length`` -> max_tokens; none -> end);
    ``details.generated_tokens`` -> output tokens; ``len(details.prefill)`` -> input tokens;
    ``details.tokens`` (TGI's ``[{"id", "text", "logprob", "special"}]``) -> ``tokens``; ``details.top_tokens``
    (per generated token, a list of the same objects) -> ``top_logprobs``. TGI refuses ``top_n_tokens`` above its
    ``--max-top-n-tokens`` (default 5; Stratos's local endpoint server takes up to 20): the refusal is an
    ``error`` reply for every prompt. A
    ``ModelError`` (the container answered HTTP >= 400), any other API error and a body that is not TGI's are
    ``error`` replies with the message.

    IAM: ``sagemaker:InvokeEndpoint`` on the endpoint; :meth:`check_reachable` also needs
    ``sagemaker:DescribeEndpoint`` on it.

    Args:
        top_k: top log-probabilities to ask per generated token, >= 0 (0 = do not ask).
        prompt_format: ``chat`` or ``text`` (above).
        control_client: the ``sagemaker`` client for :meth:`check_reachable` (None: built lazily, like
            ``client``).
        kwargs: :class:`ExternalTeacher`'s settings.
    """

    kind: ClassVar[TeacherKind] = "sagemaker-endpoint"
    service: ClassVar[str] = "sagemaker-runtime"
    operation: ClassVar[str] = "InvokeEndpoint"

    def __init__(
        self,
        target: str,
        *,
        region: str,
        top_k: int = 0,
        prompt_format: PromptFormat = "chat",
        control_client: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(target, region=region, **kwargs)
        if top_k < 0:
            raise TeacherError(f"top_k: must be >= 0 (got {top_k})")
        if prompt_format not in get_args(PromptFormat):
            raise TeacherError(f"prompt_format: must be chat or text (got {prompt_format!r})")
        self.top_k = top_k
        self.prompt_format = prompt_format
        self._control_client = control_client

    @property
    def control_client(self) -> Any:
        """The ``sagemaker`` client :meth:`check_reachable` describes the endpoint with (built on first use)."""
        with self._client_lock:
            if self._control_client is None:
                self._control_client = self._build_client("sagemaker")
            return self._control_client

    def request_body(self, messages: Sequence[Message], max_new_tokens: int) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "details": True,
            "decoder_input_details": True,
        }
        if self.top_k > 0:
            parameters["top_n_tokens"] = self.top_k
        inputs: str | list[dict[str, str]]
        if self.prompt_format == "text":
            inputs = render_plain_chat(messages)
            parameters["stop"] = [PLAIN_CHAT_STOP]
        else:
            _check_roles(messages)
            inputs = [{"role": m["role"], "content": m["content"]} for m in messages]
        return {"inputs": inputs, "parameters": parameters}

    def _invoke(self, request: Mapping[str, Any]) -> tuple[TeacherReply, int]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.target,
                ContentType="application/json",
                Accept="application/json",
                Body=canonical_json(request).encode("utf-8"),
            )
            raw = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            return _error_reply(exc)
        try:
            reply = self._reply(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reply = TeacherReply(text="", stop="error", detail=f"not a TGI answer ({exc}): {raw[:200]!r}")
        return reply, _retries(response)

    def _reply(self, answer: Any) -> TeacherReply:
        """The :class:`TeacherReply` of one TGI answer (class docstring).

        Raises:
            ValueError, KeyError, TypeError: ``answer`` is not TGI's shape.
        """
        if isinstance(answer, list):
            if len(answer) != 1:
                raise ValueError(f"{len(answer)} generations, expected 1")
            answer = answer[0]
        text = answer["generated_text"]
        if not isinstance(text, str):
            raise TypeError("generated_text is not a string")
        details = answer.get("details") or {}
        reason = details.get("finish_reason")
        stop: StopReason = _TGI_STOP.get(str(reason), "end")
        if self.prompt_format == "text" and text.endswith(PLAIN_CHAT_STOP):  # TGI keeps the stop sequence
            text = text[: -len(PLAIN_CHAT_STOP)]
        raw_top = details.get("top_tokens")
        top: TopLogprobs | None = None
        if raw_top:
            top = tuple(tuple(_token_logprob(t["id"], t["text"], t["logprob"]) for t in token) for token in raw_top)
        raw_tokens = details.get("tokens")
        tokens = (
            tuple(_token_logprob(t["id"], t["text"], t["logprob"] or 0.0) for t in raw_tokens) if raw_tokens else None
        )
        return TeacherReply(
            text=text,
            stop=stop,
            input_tokens=len(details.get("prefill") or ()),
            output_tokens=int(details.get("generated_tokens") or 0),
            top_logprobs=top,
            tokens=tokens,
        )

    def check_reachable(self) -> None:
        """``sagemaker`` ``describe_endpoint``: the endpoint must exist in the region and be serving
        (:data:`SERVING_ENDPOINT_STATUSES`: ``InService``, or ``Updating`` / ``SystemUpdating``, during which
        it keeps answering). No invocation is made, so nothing is generated or paid.

        Raises:
            TeacherError: the endpoint is missing, not serving (its status and failure reason), or cannot be
                described (the code and message, e.g. the role lacks ``sagemaker:DescribeEndpoint``).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            described = self.control_client.describe_endpoint(EndpointName=self.target)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = str(error.get("Message", exc))
            if error.get("Code") == "ValidationException" and "could not find" in message.lower():
                raise TeacherError(f"teacher {self.source}: no such endpoint in {self.region}") from exc
            raise TeacherError(
                f"teacher {self.source}: cannot describe the endpoint in {self.region}: {error.get('Code')}: {message}"
            ) from exc
        except BotoCoreError as exc:
            raise TeacherError(f"teacher {self.source}: cannot describe the endpoint in {self.region}: {exc}") from exc
        status = described.get("EndpointStatus")
        if status not in SERVING_ENDPOINT_STATUSES:
            why = f" ({described['FailureReason']})" if described.get("FailureReason") else ""
            raise TeacherError(
                f"teacher {self.source}: the endpoint is {status}{why}, not InService; wait for it or redeploy"
            )


def build_external_teacher(
    ref: ExternalTeacherRef,
    *,
    region: str,
    top_k: int = 0,
    prompt_format: PromptFormat = "chat",
    **kwargs: Any,
) -> ExternalTeacher:
    """The client for ``ref`` (``kwargs``: :class:`ExternalTeacher`'s settings).

    Raises:
        TeacherError: a setting is out of range, or ``top_k`` > 0 for Bedrock (Converse returns no
            log-probabilities).
    """
    if ref.kind == "bedrock":
        if top_k:
            raise TeacherError(f"teacher {ref.source}: Bedrock's Converse API returns no log-probabilities (top_k 0)")
        return BedrockTeacher(ref.target, region=region, **kwargs)
    return SageMakerEndpointTeacher(ref.target, region=region, top_k=top_k, prompt_format=prompt_format, **kwargs)
