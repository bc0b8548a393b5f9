"""The training job's hyperparameters, written once: what PrepareTrainingJob asks for and what the container
accepts (``stratos_train.config.TrainConfig`` adds the methods that build the training run from them).

SageMaker delivers every hyperparameter as a string. SDKs differ in how they encode non-strings: some send
``"2"``, some JSON-encode once more and send ``"\\"2\\""``. :func:`decode_hyperparameter` undoes both: it
``json.loads`` the value, and if that yields a string which is itself JSON, once more; anything that is not
JSON stays the raw string. Pydantic then checks types and ranges; an error names the hyperparameter.
:func:`encode_hyperparameters` is the other direction: the fields a caller set, as the strings SageMaker takes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stratos_contract.parallelism import ParallelismPlan

#: SageMaker's limit on one hyperparameter value, characters.
HYPERPARAMETER_VALUE_MAX = 2500

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, of the wrong type or out of range (the message names it and why)."""


def decode_hyperparameter(raw: Any) -> Any:
    """Decode one hyperparameter value as SageMaker delivers it.

    ``"2"`` -> 2, ``"\\"2\\""`` -> 2, ``"true"`` -> True, ``"[\\"q_proj\\"]"`` -> ["q_proj"],
    ``"gsm8k"`` -> "gsm8k" (not JSON: kept raw), ``"\\"gsm8k\\""`` -> "gsm8k".
    """
    if not isinstance(raw, str):
        return raw
    value: Any = raw
    for _ in range(2):  # at most one extra level of JSON encoding
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            break
    return value


class TrainingHyperparameters(BaseModel):
    """Everything one training job accepts, as typed values. Field descriptions carry units and defaults' reasons;
    a field's default is the one place that default is written (the job, the benchmarks and the Lambda that
    asks for the job all read it here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- task and data
    task: str = Field(default="mahjong-winning-tiles", description="Task name (stratos_train.tasks registry).")
    task_options: dict[str, Any] = Field(
        default_factory=dict, description="Task-specific options, e.g. {'format': 'chat'} for jsonl."
    )
    train_size: int = Field(default=2000, ge=1, le=1_000_000, description="Training examples, count.")
    eval_size: int = Field(default=200, ge=1, le=100_000, description="Held-out evaluation examples, count.")
    seed: int = Field(default=0, ge=0, description="Seed for data generation, sampling and initialisation.")

    # --- models
    teacher: str = Field(
        default="smollm2-135m-instruct",
        description="Teacher model source (see models.py), or an external teacher the job calls: "
        "bedrock:<model id> or sagemaker-endpoint:<endpoint name> (stratos_train.teachers).",
    )
    student: str = Field(default="smollm2-135m-instruct@layers=10", description="Student model source.")
    teacher_id: str = Field(
        default="", max_length=256, description="Catalog id of the teacher for the model card; empty = the source."
    )
    student_id: str = Field(
        default="",
        max_length=256,
        description="Catalog id of the student for the model card, e.g. smollm2-135m-instruct-l15 (a depth-pruned "
        "copy whose source is channel:student@layers=15); empty = the source.",
    )

    teacher_prompt_format: Literal["text", "chat"] = Field(
        default="text", description="sagemaker-endpoint teacher: prompts as one string (TGI) or as chat messages."
    )
    teacher_concurrency: int = Field(
        default=4, ge=1, le=64, description="External teacher: requests in flight at once, count."
    )
    teacher_usd_per_1k_input: float = Field(
        default=0.0, ge=0, description="External teacher: price per 1,000 input tokens, USD (what metrics.json counts)."
    )
    teacher_usd_per_1k_output: float = Field(
        default=0.0, ge=0, description="External teacher: price per 1,000 output tokens, USD."
    )

    # --- mode selection
    mode: Literal["auto", "alignment", "injection"] = "auto"
    probe_size: int = Field(default=32, ge=1, le=10_000, description="Eval examples the teacher is probed on.")
    coverage_threshold: float = Field(
        default=0.5, ge=0, le=1, description="auto: Knowledge Alignment if teacher accuracy >= this, 0..1."
    )

    # --- Knowledge Alignment loss
    divergence: Divergence = "forward_kl"
    beta: float = Field(default=0.5, ge=0, le=1, description="JSD interpolation; 0 = forward KL, 1 = reverse KL.")
    temperature: float = Field(default=1.0, gt=0, le=20, description="Softmax temperature T (loss x T^2).")
    alpha: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Weight of hard-label cross-entropy, 0..1 (1 - alpha weights the divergence). The one default "
        "of alpha: KDLossConfig takes its default from this field.",
    )
    chunk_size: int = Field(default=256, ge=1, le=65_536, description="Kept positions per loss chunk.")
    teacher_topk: int = Field(
        default=0,
        ge=0,
        le=4096,
        description="Alignment: cache the teacher's top-k logits per completion token once before training "
        "(forward KL only; drops the teacher's tail mass) instead of running the teacher every step; 0 = live.",
    )

    # --- Knowledge Injection
    teacher_rationales: bool = Field(
        default=False, description="Ask the teacher for answer-conditioned rationales, keep verified ones."
    )
    rationale_samples: int = Field(default=64, ge=0, le=100_000, description="Examples to ask the teacher on.")
    rationale_tokens: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="Tokens a teacher rationale may spend explaining before its answer line; a rationale's decoding "
        "budget is this plus max_new_tokens (the planner prices the same figure).",
    )
    domain_notes: str = Field(default="", max_length=8000, description="Put into the teacher's prompt.")
    injection_rounds: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Knowledge Injection in rounds (tasks with strata): > 1 = closed loop, each round drawing "
        "train_size / rounds fresh examples toward the strata the student failed on the previous probe.",
    )
    probe_per_stratum: int = Field(
        default=8, ge=1, le=10_000, description="Closed loop: fresh TRAIN-split problems per stratum scored per round."
    )
    round_patience: int = Field(
        default=1, ge=1, le=64, description="Closed loop: stop after this many rounds without probe gain."
    )
    round_min_gain: float = Field(
        default=0.0, ge=0, le=1, description="Closed loop: probe accuracy gain (0..1) that counts as improving."
    )
    round_weight_floor: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Closed loop: draw weight = floor + (1 - stratum accuracy); the floor keeps mastered strata.",
    )
    extra_eval: bool = Field(
        default=True,
        description="Also score the student (and teacher) on the task's further held-out sets (Mahjong: random "
        "tenpai hands), eval_size each.",
    )
    extra_eval_teacher: bool = Field(
        default=True, description="Score the teacher on the further held-out sets too (when evaluate_teacher)."
    )

    # --- optimisation
    epochs: float = Field(default=1.0, gt=0, le=100, description="Passes over the training set.")
    max_steps: int = Field(default=-1, ge=-1, description="Optimiser steps; -1 = derived from epochs.")
    per_device_batch_size: int = Field(default=8, ge=1, le=1024, description="Sequences per device per micro-step.")
    grad_accum: int = Field(default=1, ge=1, le=1024, description="Micro-steps per optimiser step.")
    learning_rate: float = Field(default=5e-4, gt=0, le=1, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    warmup_ratio: float = Field(default=0.05, ge=0, le=1, description="Fraction of steps of linear warm-up.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    max_seq_len: int = Field(default=512, ge=16, le=131_072, description="Tokens per training sequence.")
    bf16: bool = Field(default=False, description="bf16 autocast (CPU with AVX512-BF16, or GPU).")
    shuffle: bool = Field(default=True, description="Shuffle training examples each epoch.")
    group_by_length: bool = Field(
        default=True,
        description="Batch sequences of similar length (shuffled mega-batches, transformers' LengthGroupedSampler): "
        "less padding per step. Ignored when shuffle is off.",
    )
    logging_steps: int = Field(default=10, ge=1, description="Optimiser steps between metric log lines.")
    save_steps: int | None = Field(
        default=None,
        ge=1,
        description="Checkpoint interval, steps; null = by wall clock only (checkpoint_interval_minutes), plus "
        "the end of training and a SIGTERM.",
    )
    checkpoint_interval_minutes: float = Field(
        default=10.0,
        ge=0,
        le=24 * 60,
        description="Training minutes between checkpoints (every rank agrees at an optimiser step), minutes; "
        "0 = none by time. A managed spot interruption loses at most this much training; about 10 minutes keeps "
        "checkpoint writes a small share of the time for models that take a minute to save.",
    )
    parallelism: ParallelismPlan | None = Field(
        default=None,
        description="The planner's parallelism plan (stratos_contract.parallelism); when set, its micro_batch and "
        "grad_accum are the job's batch shape and the job refuses a topology it cannot honour; null = one "
        "process per device, DDP when there are several (local runs and direct invocations).",
    )

    # --- LoRA
    lora: bool = Field(default=False, description="Train LoRA adapters (merged for deployment) instead of all weights.")
    lora_r: int = Field(default=16, ge=1, le=1024)
    lora_alpha: float = Field(default=32.0, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_targets: list[str] | Literal["auto", "all-linear"] = Field(
        default="auto", description="Module names, 'auto' (per architecture) or 'all-linear'."
    )

    # --- evaluation
    max_new_tokens: int = Field(default=128, ge=1, le=8192, description="Greedy decoding budget, tokens.")
    eval_batch_size: int = Field(default=16, ge=1, le=1024)
    stop_after_answer: bool = Field(
        default=True,
        description="End each evaluation generation after its final 'Answer: ...' line (the format's last line).",
    )
    evaluate_teacher: bool = True
    evaluate_before: bool = True
    few_shot: int = Field(default=0, ge=0, le=16, description="Solved examples in the teacher's eval prompts.")

    @field_validator("lora_targets")
    @classmethod
    def _targets_not_empty(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainingHyperparameters:
        if self.teacher_topk and not (
            self.divergence == "forward_kl" or (self.divergence == "jsd" and self.beta == 0.0)
        ):
            raise ValueError(
                "teacher_topk needs divergence 'forward_kl': the cache has no tail mass for reverse KL/JSD"
            )
        if self.probe_size > self.eval_size:
            object.__setattr__(self, "probe_size", self.eval_size)
        return self

    def derived_save_steps(self, total_steps: int) -> int:
        """Step-based checkpoint interval: ``save_steps`` when set, else ``total_steps`` (only the end: the
        wall-clock interval ``checkpoint_interval_minutes`` places the others, whatever a step costs)."""
        return self.save_steps or max(1, total_steps)

    def steps_per_epoch(self, rows: int, world_size: int = 1) -> int:
        """Optimiser steps for one pass over ``rows`` examples on ``world_size`` processes, at least 1:
        ``ceil(rows / (per_device_batch_size x grad_accum x world_size))``."""
        per_step = self.per_device_batch_size * self.grad_accum * world_size
        return max(1, -(-rows // per_step))

    def total_steps(self, rows: int, world_size: int = 1) -> int:
        """Optimiser steps of the run: ``max_steps`` when set, else ``epochs`` passes over ``rows`` examples
        (rounded, at least 1)."""
        if self.max_steps > 0:
            return self.max_steps
        return max(1, round(self.steps_per_epoch(rows, world_size) * self.epochs))


H = TypeVar("H", bound=TrainingHyperparameters)


def encode_hyperparameter(value: Any) -> str:
    """One value as the string SageMaker carries: strings as they are, booleans ``true``/``false``, anything
    else as JSON (numbers, lists, objects); :func:`decode_hyperparameter` reads each back."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def encode_hyperparameters(config: TrainingHyperparameters) -> dict[str, str]:
    """The ``HyperParameters`` map of ``config``: only the fields the caller set (the container's defaults
    apply to the rest), each encoded by :func:`encode_hyperparameter`.

    Raises:
        HyperparameterError: a value longer than SageMaker's :data:`HYPERPARAMETER_VALUE_MAX` characters.
    """
    out = {
        key: encode_hyperparameter(value) for key, value in config.model_dump(mode="json", exclude_unset=True).items()
    }
    too_long = [key for key, value in out.items() if len(value) > HYPERPARAMETER_VALUE_MAX]
    if too_long:
        raise HyperparameterError(
            f"hyperparameter {too_long[0]}: {len(out[too_long[0]])} characters, over SageMaker's "
            f"{HYPERPARAMETER_VALUE_MAX}"
        )
    return out


def parse_hyperparameters(raw: Mapping[str, Any], model: type[H]) -> H:
    """Validate SageMaker hyperparameters (strings, as delivered) into ``model``.

    Keys are accepted with ``-`` or ``_``. SageMaker's own keys (``sagemaker_*``) are ignored.

    Raises:
        HyperparameterError: naming every bad hyperparameter with its value and the reason.
    """
    decoded = {
        key.replace("-", "_"): decode_hyperparameter(value)
        for key, value in raw.items()
        if not key.startswith("sagemaker_")
    }
    try:
        return model.model_validate(decoded)
    except ValidationError as exc:
        reasons = []
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "<hyperparameters>"
            value = "<missing>" if err["type"] == "missing" else repr(err.get("input"))[:60]
            reasons.append(f"hyperparameter {name}={value}: {err['msg']}")
        raise HyperparameterError("; ".join(reasons)) from exc
