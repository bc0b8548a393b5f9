"""The task spec: the user's contract with Stratos.

A task spec is one JSON document uploaded to the specs bucket (``s3://<bucket>/specs/...``). It says what
to distill (the task and its data), under which limits (budget, p50 latency, minimum accuracy, training
time, region, instance families) and what to optimise (objective weights). Every field is documented below
with its unit; ``stratos schema`` prints the JSON Schema and ``stratos validate SPEC`` checks a file.

Parsing rules (see :func:`parse_spec`):

* the document is UTF-8 JSON, at most :data:`MAX_SPEC_BYTES` bytes, an object at the top level;
* duplicate keys, ``NaN`` and ``Infinity`` are rejected (JSON allows neither portably);
* unknown fields are rejected everywhere, so a typo never silently falls back to a default;
* values are not coerced across types (``"500"`` is not a number);
* every rejection names the field path, the value and the reason, all at once
  (:class:`~stratos.errors.SpecValidationError`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from stratos.errors import FieldError, SpecValidationError, short_repr
from stratos.validation import RuleError as RuleError
from stratos.validation import field_errors, load_json_document
from stratos_contract.hyperparameters import HYPERPARAMETER_VALUE_MAX
from stratos_contract.tasks import DistillationMode as DistillationMode
from stratos_contract.tasks import Metric as Metric
from stratos_contract.tasks import RecordFormat as RecordFormat
from stratos_contract.tasks import TaskKind as TaskKind

#: Largest accepted spec document, bytes. A spec is a few KB; a larger file is almost surely a wrong upload.
MAX_SPEC_BYTES = 64 * 1024


#: Hours in a billing month, the convention AWS pricing pages use (365 * 24 / 12).
HOURS_PER_MONTH = 730.0

#: SageMaker's hard ceiling on a training job's MaxRuntimeInSeconds is 28 days.
MAX_TRAINING_HOURS = 28 * 24.0

_REGION_RE = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"
_TASK_ID_RE = r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$"
_SAGEMAKER_NAME_RE = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
_MODEL_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"
_INSTANCE_TYPE_RE = r"^ml\.[a-z][a-z0-9-]*\.[0-9]*[a-z]+$"
_FAMILY_RE = r"^[a-z][a-z0-9-]*$"
# Bucket naming rules (3-63 chars, lowercase, digits, dots, hyphens), then a non-empty key.
_S3_URI_RE = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"


@dataclass(frozen=True)
class _Pattern:
    """``Annotated`` metadata: the string must match ``pattern``; the error says ``what`` it must be.

    Pydantic's own ``pattern=`` reports the raw regex, which tells a user nothing; this keeps the regex in
    the JSON Schema and puts words in the error.
    """

    pattern: str
    what: str
    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if len(value) > self.max_length:
                raise ValueError(f"must be at most {self.max_length} characters, got {len(value)}")
            if not compiled.match(value):
                raise ValueError(f"must be {self.what}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out.update(pattern=self.pattern, maxLength=self.max_length)
        return out


class _Strict(BaseModel):
    """Base for every spec section: unknown fields rejected, no NaN/inf, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)


def check_s3_uri(uri: str) -> str:
    """Refuse S3 URIs that do not name exactly one object or prefix the way they read.

    Beyond the shape (``s3://bucket/key``): the bucket must follow S3's naming rules (no ``..``, no ``.-`` or
    ``-.``, not an IP address, none of the reserved prefixes and suffixes), and the key must not climb
    (``..`` segments), hide characters behind percent-encoding (``%2e%2e``, ``%2f``), carry a query or
    fragment (``?versionId=``), or hold empty segments (``a//b``).

    Raises:
        ValueError: saying which rule the URI breaks.
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise ValueError(f"bucket {bucket!r} is not a valid S3 bucket name (adjacent dots or a dot next to a hyphen)")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        raise ValueError(f"bucket {bucket!r} is not a valid S3 bucket name (formatted like an IP address)")
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3")):
        raise ValueError(f"bucket {bucket!r} uses a prefix or suffix S3 reserves")
    if re.search(r"[\x00-\x1f\x7f\\]", key):
        raise ValueError("the key must not contain control characters or backslashes")
    if "%" in key:
        raise ValueError("the key must be written out, not percent-encoded (e.g. %2e%2e)")
    if "?" in key or "#" in key:
        raise ValueError("the key must not carry a query or fragment (e.g. ?versionId=)")
    segments = key.rstrip("/").split("/")
    if any(part in (".", "..") for part in segments):
        raise ValueError("the key must not contain '.' or '..' segments")
    if any(part == "" for part in segments):
        raise ValueError("the key must not contain empty segments ('//')")
    return uri


S3Uri = Annotated[
    str,
    _Pattern(
        _S3_URI_RE,
        "an S3 URI like s3://my-bucket/path/file.jsonl (bucket: 3-63 lowercase letters, digits, dots, hyphens)",
        1024,
    ),
    AfterValidator(check_s3_uri),
]
RegionCode = Annotated[str, _Pattern(_REGION_RE, "an AWS region code like us-east-1", 32)]
TaskId = Annotated[
    str,
    _Pattern(
        _TASK_ID_RE,
        "1-48 lowercase letters, digits or hyphens, starting and ending with a letter or digit",
        48,
    ),
]
SageMakerName = Annotated[
    str,
    _Pattern(
        _SAGEMAKER_NAME_RE,
        "a SageMaker name: letters, digits and hyphens, starting and ending with a letter or digit",
        63,
    ),
]
ModelId = Annotated[
    str, _Pattern(_MODEL_ID_RE, "a model id like Qwen/Qwen2.5-0.5B-Instruct or smollm2-135m-instruct", 128)
]
# Bedrock foundation-model ids (``amazon.nova-lite-v1:0``): provider "." model, then ":" versions (a pattern of our
# own; Bedrock's is looser). Inference-profile ids (``us.amazon...``) and ARNs are not accepted: the stack's IAM
# grants bedrock:InvokeModel on foundation models only.
_BEDROCK_MODEL_RE = (
    r"^(?!(us|us-gov|eu|apac|jp|au|ca|global)\.)[a-z0-9-]+\.[a-z0-9-]+(\.[a-z0-9-]+)*-v[0-9]+(:[0-9]+(:[0-9a-z]+)?)?$"
)
BedrockModelId = Annotated[
    str,
    _Pattern(_BEDROCK_MODEL_RE, "a Bedrock foundation-model id like amazon.nova-lite-v1:0", 200),
]
InstanceType = Annotated[str, _Pattern(_INSTANCE_TYPE_RE, "a SageMaker instance type like ml.g5.xlarge", 32)]
_FAMILY_MAX_CHARS = 16
InstanceFamily = Annotated[str, _Pattern(_FAMILY_RE, "an instance family like g5 or p4d", _FAMILY_MAX_CHARS)]


def check_answer_regex(pattern: str) -> None:
    """Refuse a user's answer regex the scorer could not use safely.

    The training job scores with RE2 (``google-re2``: linear time in the completion's length, so a looping
    model's output cannot make a pattern like ``(a+)+$`` backtrack for hours); this is the same engine.

    Raises:
        ValueError: the pattern is empty, does not compile under RE2 (the message says why), or matches the
            empty string (every completion would then contain "the answer": accuracy 1.0 passes any gate).
    """
    import re2

    if not pattern:
        raise ValueError("empty: give a pattern that finds the answer, e.g. 'ID: (\\d+)'")
    options = re2.Options()
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"not a valid RE2 regular expression ({reason}); RE2 has no backreferences or lookaround"
        ) from exc
    if compiled.search("") is not None:
        raise ValueError(
            "matches the empty string, so every completion would score as correct; require at least one character"
        )


class TaskSection(_Strict):
    """What the task is and how answers are scored."""

    kind: TaskKind = Field(description="Task family; keys the planner's prior accuracy per model.")
    metric: Metric = Field(description="Scoring rule applied to the student's completions.")
    answer_regex: str | None = Field(
        default=None,
        max_length=512,
        description="RE2 regular expression (linear time: no backreferences or lookaround) that extracts the "
        "answer from a completion; required by, and only allowed with, metric 'regex-match'. Group 1 if "
        "present, else the whole match. It must not match the empty string.",
    )

    @field_validator("answer_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            check_answer_regex(value)
        return value

    @model_validator(mode="after")
    def _regex_iff_regex_metric(self) -> TaskSection:
        if self.metric is Metric.REGEX_MATCH and self.answer_regex is None:
            raise RuleError("answer_regex", "metric 'regex-match' needs answer_regex")
        if self.metric is not Metric.REGEX_MATCH and self.answer_regex is not None:
            raise RuleError("answer_regex", f"only used with metric 'regex-match', not '{self.metric}'")
        return self


class GeneratorData(_Strict):
    """Examples made by a built-in generator (reverse synthesis: answers first, problems derived)."""

    source: Literal["generator"] = Field(description="Discriminator: data comes from a generator.")
    generator: Literal["mahjong-winning-tiles"] = Field(description="Name of the built-in generator.")
    train_size: int = Field(default=2000, ge=1, le=1_000_000, description="Training examples, count.")
    eval_size: int = Field(default=200, ge=1, le=100_000, description="Held-out evaluation examples, count.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Generator seed; same seed, same data.")


#: The official files each built-in dataset loader reads under its ``uri`` prefix.
BUILTIN_FILES: dict[str, tuple[str, ...]] = {"gsm8k": ("train.jsonl", "test.jsonl")}


class BuiltinDatasetData(_Strict):
    """A public dataset in its official file layout under an S3 prefix (e.g. GSM8K's train/test.jsonl)."""

    source: Literal["builtin"] = Field(description="Discriminator: a built-in dataset loader.")
    name: Literal["gsm8k"] = Field(description="Dataset loader name.")
    uri: S3Uri = Field(
        description="S3 prefix holding the dataset's official files (for gsm8k: train.jsonl, test.jsonl).",
    )
    train_size: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Subsample of the train split, count; null = all."
    )
    eval_size: int | None = Field(
        default=None, ge=1, le=100_000, description="Subsample of the test split, count; null = all."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Subsampling seed.")


class JsonlData(_Strict):
    """The user's own JSONL files (see :class:`RecordFormat` and the README for the record shapes)."""

    source: Literal["jsonl"] = Field(description="Discriminator: user-provided JSONL files.")
    format: RecordFormat = Field(description="Record format of both files.")
    train_uri: S3Uri = Field(description="S3 URI of the training JSONL.")
    eval_uri: S3Uri = Field(description="S3 URI of the evaluation JSONL.")

    @model_validator(mode="after")
    def _distinct_files(self) -> JsonlData:
        if self.train_uri == self.eval_uri:
            raise RuleError("eval_uri", "same file as train_uri: evaluation would leak training data")
        return self


DataSection = Annotated[Union[GeneratorData, BuiltinDatasetData, JsonlData], Field(discriminator="source")]  # noqa: UP007


class LatencyConstraint(_Strict):
    """p50 end-to-end latency limit for one request of a stated shape, at a stated concurrency."""

    p50_ms: float = Field(gt=0, le=600_000, description="Median request latency limit, milliseconds.")
    prompt_tokens: int = Field(default=512, ge=1, le=131_072, description="Prompt length, tokens.")
    output_tokens: int = Field(default=128, ge=1, le=32_768, description="Generated length, tokens.")
    concurrency: int = Field(
        default=1, ge=1, le=1024, description="Concurrent requests per instance the limit must hold at."
    )


#: What the list validators below refuse, said in the JSON Schema too (no repeats; null, not [], for "any").
_UNIQUE_NON_EMPTY: dict[str, Any] = {"minItems": 1, "uniqueItems": True}


def _families_schema(schema: dict[str, Any]) -> None:
    """The schema of ``instance_families`` as the parser reads it: a leading ``ml.`` is allowed (and dropped)."""
    schema.update(_UNIQUE_NON_EMPTY)
    for member in schema.get("anyOf", []):
        if "items" in member:
            prefixed = r"^(ml\.)?" + _FAMILY_RE.removeprefix("^")
            member["items"].update(pattern=prefixed, maxLength=_FAMILY_MAX_CHARS + len("ml."))


#: ``constraints.spot``: when the training job runs on managed spot capacity (see :class:`Constraints`).
SpotPolicy = Literal["auto", "on", "off"]


class Constraints(_Strict):
    """Hard limits. A plan that breaks any of them is infeasible."""

    budget_usd: float = Field(
        gt=0,
        le=10_000_000,
        description="Total budget, USD: one training job plus `serving_months` of the endpoint "
        "(on-demand hosting price x instance_count x 730 h/month).",
    )
    serving_months: float = Field(
        default=1.0, ge=0, le=36, description="Months of serving the budget must also cover (730 h each)."
    )
    latency: LatencyConstraint = Field(description="p50 latency limit and the request shape it applies to.")
    min_accuracy: float = Field(
        default=0.0, ge=0, le=1, description="Lowest acceptable accuracy on the eval set, fraction 0..1."
    )
    max_training_hours: float = Field(
        default=24.0,
        gt=0,
        le=MAX_TRAINING_HOURS,
        description="Wall-clock limit of the training job, hours (SageMaker allows at most 28 days).",
    )
    region: RegionCode = Field(default="us-east-1", description="AWS region code, e.g. us-west-2.")
    instance_families: list[InstanceFamily] | None = Field(
        default=None,
        max_length=64,
        description="Allowed instance families, e.g. ['g5', 'g6e', 'p4d']; null = all in the catalog. "
        "A leading 'ml.' is accepted and dropped.",
        json_schema_extra=_families_schema,
    )
    instance_allowlist: list[InstanceType] | None = Field(
        default=None,
        max_length=256,
        description="Exact instance types the account may use (stands in for service quotas), e.g. "
        "['ml.g5.xlarge']; null = no restriction.",
        json_schema_extra=_UNIQUE_NON_EMPTY,
    )
    spot: SpotPolicy = Field(
        default="auto",
        description="Managed spot training (EC2 spare capacity at a discount; the job may be interrupted and "
        "resumes from the run's checkpoints). 'off': always on-demand. 'on': always managed spot; a training "
        "instance whose family has no spot figure in the catalog is infeasible. 'auto' (default): managed spot "
        "when its expected cost is lower AND its time estimate, interruption overhead included, still fits "
        "max_training_hours; else on-demand.",
    )

    @field_validator("instance_families", mode="before")
    @classmethod
    def _drop_ml_prefix(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.removeprefix("ml.") if isinstance(v, str) else v for v in value]
        return value

    @field_validator("instance_families", "instance_allowlist")
    @classmethod
    def _no_duplicates(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must not be empty; use null for no restriction")
            dupes = sorted({v for v in value if value.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate entries {dupes}")
        return value


#: Default objective weights (before normalisation): accuracy first, then total cost, then p50 latency,
#: then training time. Chosen so that a plan cannot win on cost alone while missing accuracy badly.
DEFAULT_WEIGHTS: dict[str, float] = {"accuracy": 0.4, "cost": 0.3, "latency": 0.2, "training_time": 0.1}


class ObjectiveWeights(_Strict):
    """Relative weights of the deployment score's terms. Non-negative; normalised to sum to 1 on parse.

    Omitted weights take their default (:data:`DEFAULT_WEIGHTS`) before normalisation, so
    ``{"accuracy": 1}`` means accuracy 1 vs the default 0.3/0.2/0.1 for the others.
    """

    accuracy: float = Field(default=DEFAULT_WEIGHTS["accuracy"], ge=0, le=1000, description="Expected accuracy.")
    latency: float = Field(default=DEFAULT_WEIGHTS["latency"], ge=0, le=1000, description="p50 latency.")
    training_time: float = Field(
        default=DEFAULT_WEIGHTS["training_time"], ge=0, le=1000, description="Training wall time."
    )
    cost: float = Field(default=DEFAULT_WEIGHTS["cost"], ge=0, le=1000, description="Training + serving cost.")

    @model_validator(mode="after")
    def _normalise(self) -> ObjectiveWeights:
        total = self.accuracy + self.latency + self.training_time + self.cost
        if total <= 0:
            raise ValueError("at least one objective weight must be positive")
        for name in ("accuracy", "latency", "training_time", "cost"):
            object.__setattr__(self, name, getattr(self, name) / total)
        return self


#: Most log-probabilities per token a TGI container returns (``top_n_tokens`` is capped at 5 by default and at
#: most 10 in TGI 2.x, ``--max-top-n-tokens``); hosted APIs give at most ~20 (OpenAI's ``top_logprobs``).
MAX_TOP_LOGPROBS = 20


class BedrockTeacher(_Strict):
    """A teacher called through Amazon Bedrock's Converse API: text only, so it teaches by Knowledge Injection
    (answer-conditioned rationales the task's verifier accepts)."""

    kind: Literal["bedrock"]
    model_id: BedrockModelId = Field(
        description="Bedrock foundation-model id, e.g. amazon.nova-lite-v1:0 (not an inference profile). It must be "
        "in the stack's BedrockTeacherModelIds (the training role may invoke only those)."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Your account's on-demand tokens-per-minute quota for this model (input + output), tokens/min; "
        "null = the snapshot's default quota for the model.",
    )
    prior_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Your estimate of the model's accuracy on this task, fraction; null = the snapshot's prior for "
        "the task kind.",
    )

    @property
    def source(self) -> str:
        """The teacher's source string, ``bedrock:<model id>`` (its candidate id and training-job source)."""
        return f"bedrock:{self.model_id}"


class EndpointTeacher(_Strict):
    """A teacher already served by a SageMaker endpoint in the TGI request shape (text, and top-k
    log-probabilities per generated token where the container returns them)."""

    kind: Literal["sagemaker-endpoint"]
    endpoint_name: SageMakerName = Field(
        description="The endpoint's name. It must be in the stack's TeacherEndpointNames (the training role may "
        "invoke only those) and InService when the run starts."
    )
    serves: ModelId = Field(
        description="Catalog id or Hugging Face repo of the model the endpoint serves: its size, tokenizer family "
        "and prior."
    )
    top_logprobs: int = Field(
        default=0,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Log-probabilities per generated token the endpoint returns (TGI top_n_tokens, at most its "
        "--max-top-n-tokens); 0 = text only. With > 0, prompt_format 'chat' and the student's tokenizer family, the "
        "job may align to them (top-k KD on the endpoint's own verified answers), after checking its token ids are "
        "the student's.",
    )
    prompt_format: Literal["text", "chat"] = Field(
        default="text",
        description="How prompts are sent: 'text' (one string, the shape every TGI container takes; the messages "
        "rendered as 'Role: content' lines) or 'chat' (the messages as a list, for a container that applies the "
        "model's chat template, such as Stratos's own local server).",
    )
    tokens_per_minute: int = Field(
        default=60_000,
        ge=1,
        le=100_000_000,
        description="Tokens per minute the endpoint gives this run, input + output, tokens/min (default 60,000: "
        "our assumption for one shared GPU instance; set what yours sustains).",
    )

    @property
    def source(self) -> str:
        """The teacher's source string, ``sagemaker-endpoint:<endpoint name>``."""
        return f"sagemaker-endpoint:{self.endpoint_name}"

    @property
    def interface(self) -> Literal["top-k", "text"]:
        """``top-k`` when its log-probabilities can be aligned to (``top_logprobs`` > 0, asked in ``chat`` format:
        in plain text the answer follows ``Assistant:``, not the student's chat turn, so its token ids are not the
        ones the student learns), else ``text``."""
        return "top-k" if self.top_logprobs > 0 and self.prompt_format == "chat" else "text"


ExternalTeacher = Annotated[BedrockTeacher | EndpointTeacher, Field(discriminator="kind")]


class Candidates(_Strict):
    """Which models the planner may consider. Ids are catalog ids or Hugging Face repo ids.

    ``external_teachers`` are teachers the training job calls instead of loading: Bedrock models and existing
    SageMaker endpoints. When the spec names external teachers and leaves ``teachers`` null, only the external
    ones are teacher candidates (name catalog teachers in ``teachers`` to plan with both).
    """

    teachers: list[ModelId] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Teacher model ids; null = the whole catalog.",
        json_schema_extra={"uniqueItems": True},
    )
    students: list[ModelId] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Student model ids; null = the whole catalog.",
        json_schema_extra={"uniqueItems": True},
    )
    external_teachers: list[ExternalTeacher] = Field(
        default_factory=list,
        max_length=8,
        description="Teachers the training job calls instead of loading: {kind: bedrock, model_id} or "
        "{kind: sagemaker-endpoint, endpoint_name, serves, top_logprobs}.",
        # The parser refuses two entries with one source; the schema can say identical entries.
        json_schema_extra={"uniqueItems": True},
    )
    accuracy_priors: dict[ModelId, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        max_length=128,
        description="Override of the catalog's prior accuracy (fraction 0..1) on this task, per model id.",
        # patternProperties alone lets a key that is no model id through; the parser refuses it.
        json_schema_extra={"propertyNames": {"pattern": _MODEL_ID_RE, "maxLength": 128}},
    )

    @model_validator(mode="after")
    def _no_repeated_ids(self) -> Candidates:
        for role in ("teachers", "students"):
            ids = getattr(self, role) or []
            seen: set[str] = set()
            for i, model_id in enumerate(ids):
                if model_id in seen:
                    raise RuleError(f"{role}.{i}", f"{model_id!r} is listed twice")
                seen.add(model_id)
        sources: set[str] = set()
        for i, teacher in enumerate(self.external_teachers):
            if teacher.source in sources:
                raise RuleError(f"external_teachers.{i}", f"{teacher.source!r} is listed twice")
            sources.add(teacher.source)
        return self

    def teacher_ids(self) -> list[str] | None:
        """The teacher candidates the planner considers: ``teachers`` (catalog or repo ids) then the external
        teachers' sources; ``None`` = the whole catalog (no teachers and no external teachers named)."""
        external = [t.source for t in self.external_teachers]
        if self.teachers is None:
            return external or None
        return [*self.teachers, *external]


class Distillation(_Strict):
    """How the training job distills."""

    mode: DistillationMode = Field(default=DistillationMode.AUTO, description="auto | alignment | injection.")
    domain_notes: str | None = Field(
        default=None,
        max_length=HYPERPARAMETER_VALUE_MAX,
        description="Domain knowledge (rules, definitions) put into the teacher's prompt when it writes "
        "rationales for Knowledge Injection. At most 2,500 characters: it reaches the training job as a "
        "SageMaker hyperparameter.",
    )


class Deployment(_Strict):
    """Where the distilled student is served."""

    endpoint_name: SageMakerName | None = Field(
        default=None,
        description="SageMaker endpoint name (<= 63 chars, letters, digits, hyphens); null = derived from "
        "task_id. Re-distillation updates this endpoint in place (blue/green).",
    )
    instance_count: int = Field(default=1, ge=1, le=16, description="Serving instances behind the endpoint.")
    replaces_tasks: list[TaskId] = Field(
        default_factory=list,
        max_length=16,
        description="Other task ids whose endpoint (of the same name, made by this stack) this spec may take "
        "over; empty = Deploy refuses an endpoint serving another task. Endpoints not made by this stack are "
        "never touched.",
        json_schema_extra={"uniqueItems": True},
    )

    @field_validator("replaces_tasks")
    @classmethod
    def _distinct_tasks(cls, tasks: list[str]) -> list[str]:
        seen = [t for i, t in enumerate(tasks) if t in tasks[:i]]
        if seen:
            raise ValueError(f"lists {seen[0]!r} twice")
        return tasks


class RedistillPolicy(_Strict):
    """When the scheduled sweep re-runs this spec. A run is due when any enabled trigger fires."""

    max_age_days: int | None = Field(
        default=30, ge=1, le=365, description="Re-distill when the last successful run is older, days."
    )
    price_change_fraction: float | None = Field(
        default=0.2,
        gt=0,
        le=10,
        description="Re-plan when an on-demand price used by the plan moved by more than this fraction (0.2 = 20%).",
    )
    on_new_data: bool = Field(default=True, description="Re-distill when a data file's S3 version changes.")


class TaskSpec(_Strict):
    """A distillation request. See the README for a worked example and ``stratos schema`` for the schema."""

    spec_version: Literal[1] = Field(default=1, description="Version of this contract.")

    @field_validator("spec_version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true equals 1 in Python; a version is a number
            raise ValueError("must be the number 1, not a boolean")
        return value

    task_id: TaskId = Field(
        description="Stable id of the task: 1-48 chars, lowercase letters, digits, hyphens. Names the "
        "default endpoint and groups re-distillation runs.",
    )
    description: str = Field(default="", max_length=2000, description="Free text for people.")
    task: TaskSection
    data: DataSection
    constraints: Constraints
    objective: ObjectiveWeights = Field(default_factory=ObjectiveWeights)
    candidates: Candidates = Field(default_factory=Candidates)
    distillation: Distillation = Field(default_factory=Distillation)
    deployment: Deployment = Field(default_factory=Deployment)
    redistill: RedistillPolicy | None = Field(
        default=None, description="Scheduled re-distillation policy; null = never re-run on schedule."
    )

    @model_validator(mode="after")
    def _data_fits_metric(self) -> TaskSpec:
        data, metric = self.data, self.task.metric
        if isinstance(data, GeneratorData) and metric is not Metric.SET_MATCH:
            raise RuleError("task.metric", f"data.generator '{data.generator}' answers are tile sets: use 'set-match'")
        if isinstance(data, BuiltinDatasetData) and metric is not Metric.NUMERIC_MATCH:
            raise RuleError("task.metric", f"data.name '{data.name}' answers are numbers: use 'numeric-match'")
        return self

    @model_validator(mode="after")
    def _external_teachers_fit_the_mode(self) -> TaskSpec:
        # Alignment needs distributions: a Bedrock teacher and an endpoint asked for text (top_logprobs 0) give none,
        # so a forced alignment can never use them (an endpoint with top_logprobs > 0 is aligned to by top-k KD).
        if self.distillation.mode is not DistillationMode.ALIGNMENT:
            return self
        for i, teacher in enumerate(self.candidates.external_teachers):
            if isinstance(teacher, EndpointTeacher) and teacher.interface == "top-k":
                continue
            if isinstance(teacher, BedrockTeacher):
                why = "Bedrock's Converse API returns text only"
            elif teacher.top_logprobs == 0:
                why = "top_logprobs is 0: the endpoint is asked for text only"
            else:
                why = "prompt_format 'text': its answers are not in the student's chat turn (use 'chat')"
            raise RuleError(
                "distillation.mode",
                f"'alignment' needs the teacher's token distributions; candidates.external_teachers[{i}] "
                f"({teacher.source}): {why}, so it teaches by injection only: use 'auto' or 'injection', give the "
                "endpoint's top_logprobs, or drop it",
            )
        return self

    def budget_breakdown(self, hosting_usd_per_hour: float) -> dict[str, float]:
        """Split the budget for a given serving price.

        Args:
            hosting_usd_per_hour: on-demand hosting price of ONE serving instance, USD/hour.

        Returns:
            ``{"serving_usd": ..., "training_usd": ...}``: serving cost over ``serving_months`` (730 h each,
            times ``deployment.instance_count``), and what is left of the budget for training (may be < 0).
        """
        serving = hosting_usd_per_hour * HOURS_PER_MONTH * self.constraints.serving_months
        serving *= self.deployment.instance_count
        return {"serving_usd": serving, "training_usd": self.constraints.budget_usd - serving}


# --------------------------------------------------------------------------------------------------------
# Parsing with errors that name the field.


def parse_spec(raw: bytes | str, source: str = "spec") -> TaskSpec:
    """Parse and validate a task spec document.

    Args:
        raw: the document as uploaded: UTF-8 bytes or text.
        source: where it came from (S3 URI or path), used in messages.

    Returns:
        The validated, immutable :class:`TaskSpec` (objective weights normalised).

    Raises:
        SpecValidationError: with one :class:`~stratos.errors.FieldError` per problem: encoding, size, JSON
            syntax, duplicate keys, NaN/Infinity, depth, unknown fields, types, ranges, cross-field rules.
    """
    doc = load_json_document(raw, source, error_cls=SpecValidationError, max_bytes=MAX_SPEC_BYTES)
    return validate_spec_document(doc, source)


def validate_spec_document(doc: Any, source: str = "spec") -> TaskSpec:
    """Validate an already-decoded JSON value as a :class:`TaskSpec` (see :func:`parse_spec`)."""
    if not isinstance(doc, dict):
        raise SpecValidationError([FieldError("<root>", short_repr(doc), "a task spec must be a JSON object")], source)
    try:
        # strict: no "500" -> 500 coercion. JSON mode so enums and literals accept their string values.
        return TaskSpec.model_validate_json(json.dumps(doc), strict=True)
    except ValidationError as exc:
        raise SpecValidationError(field_errors(exc, doc, TaskSpec), source) from exc


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of :class:`TaskSpec`, as printed by ``stratos schema``."""
    schema = TaskSpec.model_json_schema()
    schema["$id"] = "https://stratos.dev/schemas/task-spec-v1.json"
    schema["title"] = "Stratos task spec"
    return schema


#: Prefix of the artifacts bucket that specs may read data from; the rest of that bucket (``specs/``,
#: ``runs/``, ``models/``) is Stratos's own.
ARTIFACTS_DATA_PREFIX = "data/"


@dataclass(frozen=True)
class DataLocation:
    """A place specs may read data from: every object under ``prefix`` of ``bucket`` (``""`` = the whole
    bucket). Written ``bucket`` or ``bucket/prefix/`` (see :func:`parse_data_location`)."""

    bucket: str
    prefix: str = ""

    def holds(self, uri: str) -> bool:
        """Whether the object or prefix ``uri`` (already a valid :data:`S3Uri`) lies inside this location."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket == self.bucket and key.startswith(self.prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_data_location(text: str) -> DataLocation:
    """``my-bucket`` or ``my-bucket/some/prefix/`` (an ``s3://`` prefix is allowed) as a :class:`DataLocation`.

    Raises:
        ValueError: the bucket is not a valid S3 bucket name, or the prefix climbs or is percent-encoded.
    """
    body = text.strip().removeprefix("s3://")
    bucket, _, prefix = body.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not re.fullmatch(_S3_URI_RE, f"s3://{bucket}/x"):
        raise ValueError(f"{text!r} does not start with a valid S3 bucket name")
    check_s3_uri(f"s3://{bucket}/{prefix or 'x'}")
    return DataLocation(bucket, prefix)


def data_fields(spec: TaskSpec) -> list[tuple[str, str]]:
    """``(field path, S3 URI)`` of every place the spec reads data from (none for a generator)."""
    data = spec.data
    if isinstance(data, JsonlData):
        return [("data.train_uri", data.train_uri), ("data.eval_uri", data.eval_uri)]
    if isinstance(data, BuiltinDatasetData):
        return [("data.uri", data.uri)]
    return []


def data_location_errors(
    spec: TaskSpec, allowed: list[DataLocation], reserved_buckets: tuple[str, ...] = ()
) -> list[FieldError]:
    """Data confinement: one :class:`FieldError` per data URI outside every ``allowed`` location.

    Args:
        spec: a parsed spec.
        allowed: where this stack reads data from (the artifacts bucket's ``data/`` prefix and the buckets
            named by the ``DataBucketName`` stack parameter; ``stratos validate --data-buckets``).
        reserved_buckets: Stratos's own buckets (specs, artifacts): a URI there is refused unless an
            ``allowed`` location with a prefix holds it, so a bucket parameter naming the artifacts bucket still
            never opens ``specs/`` or another run's ``runs/``.
    """
    errors: list[FieldError] = []
    where = ", ".join(str(location) for location in allowed) or "none configured"
    for path, uri in data_fields(spec):
        bucket = uri.removeprefix("s3://").partition("/")[0]
        inside = [loc for loc in allowed if loc.holds(uri)]
        if bucket in reserved_buckets:
            inside = [loc for loc in inside if loc.prefix]
        if inside:
            continue
        if bucket in reserved_buckets:
            reason = f"this bucket belongs to Stratos; data may only live under {where}"
        else:
            reason = (
                f"bucket {bucket!r} is not one this stack reads data from (allowed: {where}); "
                "name it in the DataBucketName stack parameter"
            )
        errors.append(FieldError(path, short_repr(uri), reason))
    return errors
