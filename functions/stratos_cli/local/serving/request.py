"""Invocation bodies of the local endpoint: the wire models (TGI / SageMaker Hugging Face LLM shape) and the
normalised :class:`GenerationRequest` the model generates from.

Accepted bodies (UTF-8 JSON): ``{"inputs": "prompt text", "parameters": {...}}``, ``{"inputs": [messages],
"parameters": {...}}`` and ``{"messages": [messages], "parameters": {...}}``; each message is ``{"role",
"content"}``. Validation is strict (no coercion: ``"10"`` is not an integer and ``true`` is not a number, as in
JSON Schema), and the first rejected field becomes a :class:`RequestError` that the server answers as HTTP 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

MAX_NEW_TOKENS_LIMIT = 4096
"""Upper bound on ``parameters.max_new_tokens``, tokens (a CPU guard; the context length also bounds it)."""
MAX_TOP_N_TOKENS = 20
"""Upper bound on ``parameters.top_n_tokens`` (TGI's is its launcher's ``--max-top-n-tokens``, default 5; 20 is the
most a hosted API returns, and what a Stratos spec's ``top_logprobs`` allows)."""
Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = get_args(Role)
"""Chat roles a message may have."""

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
#: Error types raised by this module's own validators: their message is the reason as it stands.
_OWN_ERRORS = frozenset({"empty_prompt", "inputs_type", "conflict", "no_turns", "null_turns", "sampling_temperature"})


class RequestError(ValueError):
    """An invocation body was rejected; ``field`` is its dotted path (``<body>`` for the body as a whole).

    Attributes:
        field: e.g. ``inputs``, ``messages[1].role``, ``parameters.max_new_tokens``, ``<body>``.
        reason: why, in words a caller can act on.
        status: the HTTP status the server answers with (400).
    """

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


class Message(BaseModel):
    """One chat turn."""

    model_config = _STRICT

    role: Role
    content: str


def _not_blank(prompt: str) -> str:
    if not prompt.strip():
        raise PydanticCustomError("empty_prompt", "empty prompt")
    return prompt


def _inputs_kind(value: Any) -> str | None:
    """Which form ``inputs`` takes: a prompt string or a list of chat messages (``None``: neither)."""
    return "prompt" if isinstance(value, str) else "chat" if isinstance(value, list) else None


Turns = Annotated[list[Message], Field(min_length=1)]
"""A non-empty list of chat messages."""
Inputs = Annotated[
    Annotated[str, AfterValidator(_not_blank), Tag("prompt")] | Annotated[Turns, Tag("chat")],
    Discriminator(
        _inputs_kind,
        custom_error_type="inputs_type",
        custom_error_message="must be a prompt string or a list of chat messages",
    ),
]
"""``inputs``: a prompt string or chat messages; the tag names ``prompt``/``chat`` appear in pydantic error
locations and are dropped from the field paths a :class:`RequestError` names."""


class Parameters(BaseModel):
    """``parameters`` (a subset of TGI's); ``null`` for any of them means unset.

    Decoding is greedy unless ``do_sample`` is true, or ``do_sample`` is unset and ``temperature`` > 0 (as in
    TGI). Each field's description is the reason a rejected value is given.
    """

    model_config = _STRICT

    max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS_LIMIT)] | None = Field(
        None, description=f"an integer 1..{MAX_NEW_TOKENS_LIMIT}: tokens to generate at most"
    )
    do_sample: bool | None = Field(
        None,
        description="true or false: sample instead of decoding greedily (default: greedy unless temperature > 0)",
    )
    temperature: Annotated[float, Field(ge=0, le=100)] | None = Field(
        None, description="a number in [0, 100]: sampling temperature (0 = greedy)"
    )
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="a number in (0, 1]: nucleus-sampling probability mass"
    )
    top_k: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="an integer in [0, 1000000]: sample among the k likeliest tokens (0 = off)"
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(
        None, description="an integer in [0, 4294967295]: random seed set before sampling"
    )
    stop: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="a list of non-empty strings: the text is cut before the first one"
    )
    details: bool | None = Field(
        None,
        description="true or false: add TGI's details to the answer (finish_reason, generated_tokens, seed)",
    )
    decoder_input_details: bool | None = Field(
        None, description="true or false: with details, also the prompt's tokens (details.prefill, as TGI)"
    )
    top_n_tokens: Annotated[int, Field(ge=0, le=MAX_TOP_N_TOKENS)] | None = Field(
        None,
        description=f"an integer 0..{MAX_TOP_N_TOKENS}: with details, the likeliest tokens and their log-probabilities "
        "at every generated position (details.top_tokens, as TGI; 0 = none)",
    )

    @model_validator(mode="after")
    def _sampling_needs_a_temperature(self) -> Self:
        if self.do_sample and self.temperature == 0:
            raise PydanticCustomError(
                "sampling_temperature", "must be > 0 when do_sample is true", {"field": "temperature"}
            )
        return self

    @property
    def sampling(self) -> bool:
        """Whether to sample: ``do_sample`` if set, else ``temperature`` > 0."""
        if self.do_sample is not None:
            return self.do_sample
        return self.temperature is not None and self.temperature > 0


#: Parameters accepted under ``parameters``: name -> what it means.
PARAMETERS: dict[str, str] = {name: str(info.description) for name, info in Parameters.model_fields.items()}


class InvocationBody(BaseModel):
    """A ``POST /invocations`` body: exactly one of ``inputs`` and ``messages``, optional ``parameters``."""

    model_config = _STRICT

    inputs: Inputs | None = None
    messages: Turns | None = None
    parameters: Parameters | None = None

    @model_validator(mode="after")
    def _one_source_of_turns(self) -> Self:
        given = self.model_fields_set & {"inputs", "messages"}  # a field sent as null counts as given
        if len(given) == 2:
            raise PydanticCustomError("conflict", "give inputs or messages, not both", {"field": "messages"})
        if not given:
            raise PydanticCustomError(
                "no_turns", "missing: give inputs (a prompt string or chat messages) or messages", {"field": "inputs"}
            )
        if self.inputs is None and self.messages is None:
            expected = "a prompt string or a list of chat messages" if "inputs" in given else "a list of chat messages"
            raise PydanticCustomError("null_turns", f"must be {expected}, not null", {"field": given.pop()})
        return self

    def to_request(self) -> GenerationRequest:
        """The normalised request (a prompt string becomes one user message; sampling decided)."""
        turns: Sequence[Message] | str = self.inputs if self.inputs is not None else self.messages or []
        messages = (
            ({"role": "user", "content": turns},)
            if isinstance(turns, str)
            else tuple({"role": m.role, "content": m.content} for m in turns)
        )
        params = self.parameters or Parameters()
        return GenerationRequest(
            messages=messages,
            max_new_tokens=params.max_new_tokens,
            do_sample=params.sampling,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seed=params.seed,
            stop=tuple(params.stop or ()),
            details=bool(params.details),
            decoder_input_details=bool(params.details and params.decoder_input_details),
            top_n_tokens=params.top_n_tokens or 0,
        )


class GenerationRequest(BaseModel):
    """One parsed invocation.

    Attributes:
        messages: the chat turns (a plain prompt string becomes one user message); each ``{"role", "content"}``.
        max_new_tokens: tokens to generate at most (``None`` = the model's generation_config, else 128).
        do_sample: sample (True) or decode greedily (False).
        temperature: sampling temperature (``None`` = library default 1.0); only used when sampling.
        top_p: nucleus-sampling mass, (0, 1]; only used when sampling.
        top_k: top-k cut-off (0 = off); only used when sampling.
        seed: random seed set before sampling (``None`` = unseeded).
        stop: strings that end the text (cut before the first occurrence), in addition to the stop token ids.
        details: answer with TGI's ``details`` (how many tokens were generated and why generation ended).
        decoder_input_details: with ``details``, also list the prompt's tokens (``details.prefill``).
        top_n_tokens: with ``details``, the ``top_n_tokens`` likeliest tokens per generated position
            (``details.top_tokens``); 0 = none.
    """

    model_config = ConfigDict(frozen=True)

    messages: tuple[dict[str, str], ...]
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    details: bool = False
    decoder_input_details: bool = False
    top_n_tokens: int = 0


def parse_request(body: bytes) -> GenerationRequest:
    """Parse and check an invocation body (UTF-8 JSON); see :class:`InvocationBody` and :class:`Parameters`.

    Raises:
        RequestError: naming the first offending field: ``<body>`` (not JSON, not an object), ``inputs``,
            ``messages``, ``messages[i].role`` / ``.content``, ``parameters``, ``parameters.<name>``, or an
            unknown field's own name.
    """
    try:
        return InvocationBody.model_validate_json(body).to_request()
    except ValidationError as exc:
        raise _request_error(exc.errors()[0]) from exc


def _request_error(error: ErrorDetails) -> RequestError:
    """The :class:`RequestError` for one pydantic error: a dotted field path and a reason a caller can act on."""
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    if "field" in ctx:  # a model validator names the field it rejects, relative to its model
        loc.append(str(ctx["field"]))
    if len(loc) > 1 and loc[0] == "inputs" and loc[1] in ("prompt", "chat"):
        del loc[1]  # the union tag of Inputs
    kind, value = error["type"], error.get("input")
    if kind == "json_invalid":
        return RequestError("<body>", f"not valid JSON ({ctx.get('error', error['msg'])})")
    if not loc:
        return RequestError("<body>", f"must be a JSON object, got {type(value).__name__}")
    if loc[0] == "parameters" and len(loc) > 1:
        field, name = f"parameters.{loc[1]}", str(loc[1])  # a list item's error (stop[0]) is the parameter's
        if kind == "extra_forbidden":
            return RequestError(field, f"unsupported parameter (supported: {', '.join(PARAMETERS)})")
        if kind in _OWN_ERRORS:
            return RequestError(field, error["msg"])
        return RequestError(field, f"must be {PARAMETERS[name]} (got {_short(value)})")
    field = _path(loc)
    if kind in _OWN_ERRORS:
        return RequestError(field, error["msg"])
    if kind == "missing":
        return RequestError(field, "missing")
    if kind == "extra_forbidden":
        expected = "inputs or messages, and optional parameters" if len(loc) == 1 else "role and content"
        return RequestError(field, f"unknown field (expected {expected})")
    if kind == "too_short":  # only the lists of chat messages have a minimum length
        return RequestError(field, "must be a non-empty list of {role, content} messages")
    if kind == "list_type":  # only the lists of chat messages are lists outside parameters
        return RequestError(field, f"must be a non-empty list of {{role, content}} messages (got {_short(value)})")
    if kind == "string_type":  # a message's content
        return RequestError(field, f"must be a string (got {_short(value)})")
    if kind == "model_type":
        what = "an object with role and content" if len(loc) > 1 else "an object"
        return RequestError(field, f"must be {what} (got {_short(value)})")
    return RequestError(field, f"{error['msg']} (got {_short(value)})")


def _path(loc: Sequence[int | str]) -> str:
    """``("messages", 1, "role")`` -> ``messages[1].role``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
