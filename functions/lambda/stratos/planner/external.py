"""External teachers: Bedrock models and existing SageMaker endpoints as planner candidates, and what calling them
costs in tokens, time and money.

A spec's ``candidates.external_teachers`` (:class:`~stratos.spec.BedrockTeacher`,
:class:`~stratos.spec.EndpointTeacher`) become teacher :class:`~stratos.planner.catalog.ModelSpec` records with
an :class:`~stratos.planner.catalog.TeacherAccess` (:func:`external_teachers`):

* **Bedrock** — the model must be in the packaged snapshot (``stratos/data/bedrock.json``: on-demand price per
  1,000 input and output tokens, a default tokens-per-minute quota, the published size or none, priors per task
  kind with their sources) and offered in the spec's region. Interface ``text``: Converse returns no
  log-probabilities, so the pair can only be taught by Knowledge Injection.
* **SageMaker endpoint** — the record is the catalog model the endpoint ``serves`` (its size, tokenizer family
  and priors), renamed to the teacher's source. Interface ``top-k`` when the spec says the endpoint returns
  ``top_logprobs`` > 0 and is asked in ``chat`` format (top-k logit distillation on the teacher's own answers
  needs the student's tokenizer family and its chat turn), else ``text`` (:attr:`~stratos.spec.EndpointTeacher.
  interface`). Its price is 0 here: the endpoint is paid for by the hour whether or not this run calls
  it (its owner's bill, not this run's).

**Usage** (:func:`api_usage`), per training job, from the planner's :class:`~stratos.planner.estimators.
TrainingWorkload`; every call sends the prompt and receives the completion:

============================  ==========================================  ======================================
call                          count                                        tokens in / out per call
============================  ==========================================  ======================================
evaluation (teacher row)      ``eval_examples``                           prompt / output
mode probe (``auto`` only)    ``PROBE_SIZE``                              prompt / output
injection rationales          ``min(examples, RATIONALE_SAMPLES)``        prompt + RATIONALE_PROMPT_TOKENS /
                                                                          rationale + output
alignment (top-k, endpoint)   ``examples`` (the teacher writes targets)   prompt / output
============================  ==========================================  ======================================

The job asks the teacher once per example for at most ``rationale_samples`` examples (the training
hyperparameter's default, :data:`RATIONALE_SAMPLES`; ``stratos_train.modes.build_injection_set``) and keeps the
answers its checker accepts; the other examples get the task's own verified targets, at no teacher cost.

``seconds = (tokens in + tokens out) / (tokens_per_minute / 60)`` (the rate limit binds: the container's
bounded concurrency keeps it busy), ``usd = in / 1000 x usd_per_1k_input + out / 1000 x usd_per_1k_output``.
The job waits for these calls on its training instance, so their time is billed there too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratos.errors import FieldError
from stratos.planner.catalog import Catalog, ModelSpec, Prior, TeacherAccess
from stratos.spec import BedrockTeacher, EndpointTeacher, TaskKind, TaskSpec
from stratos_contract.hyperparameters import TrainingHyperparameters

RATIONALE_PROMPT_TOKENS = 120
"""Tokens the rationale request adds to the task's prompt: the tutor system prompt, the known answer and the
instruction (``stratos_train.modes.rationale_prompt``; our count of its fixed text, domain notes excluded)."""
RATIONALE_SAMPLES: int = TrainingHyperparameters.model_fields["rationale_samples"].default
"""Examples a training job asks its teacher to explain (``rationale_samples``' default), count."""
PROBE_SIZE: int = TrainingHyperparameters.model_fields["probe_size"].default
"""Training examples the job's ``auto`` mode decision asks the teacher (``probe_size``' default), count."""
BEDROCK_CONTEXT_TOKENS = 128_000
"""Context length assumed for a Bedrock model (the snapshot's models all accept at least this many tokens)."""


class _BedrockPrior(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accuracy: float = Field(ge=0, le=1)
    source: str = Field(min_length=1)


class BedrockModel(BaseModel):
    """One Bedrock model of the packaged snapshot (``stratos/data/bedrock.json``; units in the field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str
    name: str
    price_list_model: str = Field(min_length=1, description="The Price List API's 'model' attribute value.")
    regions: tuple[str, ...]
    usd_per_1k_input: float = Field(ge=0)
    usd_per_1k_output: float = Field(ge=0)
    tokens_per_minute: int = Field(ge=1)
    params: int | None = Field(default=None, ge=1)
    priors: dict[TaskKind, _BedrockPrior]


class BedrockSnapshot(BaseModel):
    """The packaged Bedrock snapshot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int
    snapshot_date: str
    description: str
    models: tuple[BedrockModel, ...]

    def model(self, model_id: str) -> BedrockModel | None:
        """The snapshot's model of a foundation-model id, or ``None``."""
        return next((m for m in self.models if m.model_id == model_id), None)


@functools.cache
def bedrock_snapshot() -> BedrockSnapshot:
    """The packaged Bedrock snapshot, loaded once per process.

    Raises:
        pydantic.ValidationError: the packaged file is malformed (a packaging bug).
    """
    text = resources.files("stratos").joinpath("data", "bedrock.json").read_text(encoding="utf-8")
    return BedrockSnapshot.model_validate(json.loads(text))


def snapshot_models(spec: TaskSpec) -> list[BedrockModel]:
    """The snapshot records of the spec's Bedrock teachers that the snapshot knows (an unknown one is refused by
    :func:`external_teachers`' errors), in the spec's order: what LookUpPrices prices."""
    snapshot = bedrock_snapshot()
    named = [t.model_id for t in spec.candidates.external_teachers if isinstance(t, BedrockTeacher)]
    return [m for m in (snapshot.model(i) for i in named) if m is not None]


def _bedrock_model(
    teacher: BedrockTeacher, region: str, field: str, snapshot: BedrockSnapshot, price: Any = None
) -> tuple[ModelSpec | None, FieldError | None]:
    found = snapshot.model(teacher.model_id)
    if found is None:
        known = ", ".join(m.model_id for m in snapshot.models)
        why = f"not a Bedrock model Stratos knows (snapshot {snapshot.snapshot_date}: {known})"
        return None, FieldError(f"{field}.model_id", repr(teacher.model_id), why)
    if region not in found.regions:
        why = f"{found.name} is not offered on demand in {region} (snapshot: {', '.join(found.regions)})"
        return None, FieldError(f"{field}.model_id", repr(teacher.model_id), why)
    priors = {kind: Prior(p.accuracy, p.source) for kind, p in found.priors.items()}
    access = TeacherAccess(
        kind="bedrock",
        target=teacher.model_id,
        interface="text",
        top_logprobs=0,
        tokens_per_minute=teacher.tokens_per_minute or found.tokens_per_minute,
        usd_per_1k_input=found.usd_per_1k_input if price is None else float(price.usd_per_1k_input),
        usd_per_1k_output=found.usd_per_1k_output if price is None else float(price.usd_per_1k_output),
        price_source=(
            f"snapshot {snapshot.snapshot_date}"
            if price is None
            else "live Pricing API"
            if price.source == "live"
            else price.note or f"snapshot {snapshot.snapshot_date}"
        ),
    )
    model = ModelSpec(
        id=teacher.source,
        hf_repo="",
        params=found.params or 0,
        # An API model's architecture plays no part in the plan (no memory, no FLOPs on the training instance):
        # unit figures keep the estimators' arithmetic defined.
        layers=1,
        hidden_size=1,
        attention_heads=1,
        kv_heads=1,
        head_dim=1,
        context_length=BEDROCK_CONTEXT_TOKENS,
        vocab_size=1,
        vocab_size_padded=1,
        tied_embeddings=True,
        tokenizer_family=teacher.source,  # shared with no student: text only
        chat_template=True,
        licence="aws-service-terms",
        roles=frozenset({"teacher"}),
        sliding_window=None,
        full_attention_layers=None,
        local_package=None,
        priors=priors,
        access=access,
    )
    return model, None


def _endpoint_model(
    teacher: EndpointTeacher, catalog: Catalog, field: str
) -> tuple[ModelSpec | None, FieldError | None]:
    served = catalog.model(teacher.serves)
    if served is None:
        known = ", ".join(m.id for m in catalog.models)
        return None, FieldError(f"{field}.serves", repr(teacher.serves), f"not in the model catalog (known: {known})")
    access = TeacherAccess(
        kind="sagemaker-endpoint",
        target=teacher.endpoint_name,
        interface=teacher.interface,
        top_logprobs=teacher.top_logprobs,
        tokens_per_minute=teacher.tokens_per_minute,
        usd_per_1k_input=0.0,
        usd_per_1k_output=0.0,
        price_source="endpoint: billed by the hour to its owner whether or not this run calls it",
    )
    model = replace(served, id=teacher.source, roles=frozenset({"teacher"}), local_package=None, access=access)
    return model, None


def external_teachers(
    spec: TaskSpec, catalog: Catalog, token_prices: Sequence[Any] = ()
) -> tuple[list[ModelSpec], list[FieldError]]:
    """The spec's external teachers as planner records (module docstring), and the errors of those that cannot be.

    Args:
        spec: the validated spec.
        catalog: the model catalog (an endpoint teacher is the catalog model it serves).
        token_prices: Bedrock token prices LookUpPrices read (:class:`~stratos.planner.pricing.TokenPriceRow`,
            live or snapshot with its note); a Bedrock teacher without a row is priced from the snapshot.

    Returns:
        ``(models in the spec's order, errors naming candidates.external_teachers[i].<field>)``.
    """
    models: list[ModelSpec] = []
    errors: list[FieldError] = []
    region = spec.constraints.region
    for i, teacher in enumerate(spec.candidates.external_teachers):
        field = f"candidates.external_teachers[{i}]"
        if isinstance(teacher, BedrockTeacher):
            price = next((p for p in token_prices if p.model_id == teacher.model_id), None)
            model, error = _bedrock_model(teacher, region, field, bedrock_snapshot(), price)
            if model is not None and teacher.prior_accuracy is not None:
                own = Prior(teacher.prior_accuracy, "the spec's candidates.external_teachers prior_accuracy")
                model = replace(model, priors={**model.priors, spec.task.kind: own})
        else:
            model, error = _endpoint_model(teacher, catalog, field)
        if error is not None:
            errors.append(error)
        elif model is not None:
            models.append(model)
    return models, errors


def plan_model(spec: TaskSpec, catalog: Catalog, model_id: str) -> ModelSpec | None:
    """The planner's record of ``model_id`` for ``spec``: a catalog model, else one of the spec's external
    teachers by its source id (``bedrock:<model id>``, ``sagemaker-endpoint:<name>``); None when neither.

    The one place a plan's model id is turned back into its record (the training job's hyperparameters, the
    local run's own prediction), so both read the same sizes, interface and prices the planner used.
    """
    found = catalog.model(model_id)
    if found is not None or not spec.candidates.external_teachers:
        return found
    models, _ = external_teachers(spec, catalog)
    return next((m for m in models if m.id == model_id), None)


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """What one training job's calls to an external teacher are expected to take.

    Attributes:
        calls: requests, count.
        input_tokens, output_tokens: tokens sent and received, count.
        seconds: wall time at the teacher's rate limit, s.
        usd: price of the tokens, USD (0 for an endpoint teacher).
    """

    calls: float
    input_tokens: float
    output_tokens: float
    seconds: float
    usd: float


def api_usage(
    access: TeacherAccess, mode: str, examples: int, eval_examples: int, workload: Any, *, probe: bool = True
) -> ApiUsage:
    """The calls one training job makes to ``access`` (module docstring table).

    Args:
        access: the teacher's access record.
        mode: ``alignment`` (top-k: the teacher writes every training target) or ``injection``.
        examples, eval_examples: training and held-out examples, count.
        workload: the :class:`~stratos.planner.estimators.TrainingWorkload` (prompt, output and rationale tokens per
            example).
        probe: the job decides the mode itself (the spec's ``distillation.mode`` is ``auto``) and probes the
            teacher first.
    """
    rows: list[tuple[float, float, float]] = [(eval_examples, workload.prompt_tokens, workload.output_tokens)]
    if probe:
        rows.append((min(PROBE_SIZE, examples), workload.prompt_tokens, workload.output_tokens))
    if mode == "injection":
        rows.append(
            (
                min(examples, RATIONALE_SAMPLES),
                workload.prompt_tokens + RATIONALE_PROMPT_TOKENS,
                workload.rationale_tokens + workload.output_tokens,
            )
        )
    else:
        rows.append((examples, workload.prompt_tokens, workload.output_tokens))
    calls = sum(n for n, _, _ in rows)
    tokens_in = sum(n * t for n, t, _ in rows)
    tokens_out = sum(n * t for n, _, t in rows)
    seconds = (tokens_in + tokens_out) / (access.tokens_per_minute / 60.0)
    usd = tokens_in / 1000.0 * access.usd_per_1k_input + tokens_out / 1000.0 * access.usd_per_1k_output
    return ApiUsage(calls, tokens_in, tokens_out, seconds, usd)


def describe(access: TeacherAccess) -> Mapping[str, Any]:
    """The access record as JSON-safe fields (plan summaries, the report)."""
    return {
        "kind": access.kind,
        "target": access.target,
        "interface": access.interface,
        "top_logprobs": access.top_logprobs,
        "tokens_per_minute": access.tokens_per_minute,
        "usd_per_1k_input": access.usd_per_1k_input,
        "usd_per_1k_output": access.usd_per_1k_output,
        "price_source": access.price_source,
    }
