"""Training-job configuration: SageMaker hyperparameters (strings) -> a validated :class:`TrainConfig`.

The fields, their defaults and the string decoding are the contract's
(:class:`stratos_contract.hyperparameters.TrainingHyperparameters`): the Lambda that asks for the job builds
the same model. :class:`TrainConfig` adds what builds the run from them: the loss's :class:`KDLossConfig`
(:meth:`TrainConfig.kd_loss_config`) and the Hugging Face ``TrainingArguments``
(:meth:`TrainConfig.training_arguments`), so the job, the benchmarks and the tests configure training one way,
and every default (``alpha`` included) is written once, on a field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from stratos_contract.hyperparameters import (
    Divergence,
    HyperparameterError,
    TrainingHyperparameters,
    decode_hyperparameter,
)
from stratos_contract.hyperparameters import parse_hyperparameters as _parse
from stratos_train.parallel import COLLECTIVE_TIMEOUT_S, fsdp_config

if TYPE_CHECKING:  # transformers is imported where the arguments are built: parsing the config stays cheap
    from transformers import TrainingArguments

__all__ = [
    "Divergence",
    "HyperparameterError",
    "KDLossConfig",
    "TrainConfig",
    "decode_hyperparameter",
    "parse_hyperparameters",
]


class TrainConfig(TrainingHyperparameters):
    """Everything one training job needs (the contract's fields), with the methods that build the run.

    With a ``parallelism`` plan, the plan's ``micro_batch`` and ``grad_accum`` replace ``per_device_batch_size``
    and ``grad_accum`` (the plan is what the planner checked against memory), and combinations the container
    cannot run under the plan are refused here, before anything is loaded.
    """

    @model_validator(mode="after")
    def _obey_plan(self) -> TrainConfig:
        plan = self.parallelism
        if plan is None:
            return self
        object.__setattr__(self, "per_device_batch_size", plan.micro_batch)
        object.__setattr__(self, "grad_accum", plan.grad_accum)
        if plan.strategy == "fsdp_full_shard" and self.injection_rounds > 1 and self.mode != "alignment":
            raise ValueError(
                "parallelism.strategy fsdp_full_shard cannot run the closed loop (injection_rounds > 1): its "
                "per-round probes evaluate on every rank; use ddp or injection_rounds 1"
            )
        cached = plan.teacher_placement == "topk_cache" or (
            self.mode == "alignment" and plan.placement_for(self.mode) == "topk_cache"
        )
        if cached and self.mode != "injection" and not self.topk_divergence:
            raise ValueError(
                f"parallelism.teacher_placement topk_cache needs divergence 'forward_kl' (the cache has no tail "
                f"mass), not {self.divergence!r} with beta {self.beta}"
            )
        return self

    @property
    def topk_divergence(self) -> bool:
        """True when the divergence can use a top-k teacher cache (forward KL, or JSD with beta 0)."""
        return self.divergence == "forward_kl" or (self.divergence == "jsd" and self.beta == 0.0)

    def kd_loss_config(self, *, cross_entropy_only: bool = False) -> KDLossConfig:
        """The loss's hyperparameters from this config.

        Args:
            cross_entropy_only: plain fine-tuning on the targets (Knowledge Injection, or no teacher): alpha 1,
                so the divergence settings are unused and left at their defaults.
        """
        if cross_entropy_only:
            return KDLossConfig(alpha=1.0, chunk_size=self.chunk_size)
        return KDLossConfig(
            divergence=self.divergence,
            beta=self.beta,
            temperature=self.temperature,
            alpha=self.alpha,
            chunk_size=self.chunk_size,
        )

    def training_arguments(
        self,
        output_dir: str,
        *,
        max_steps: int,
        save_steps: int | None = None,
        use_cpu: bool | None = None,
        layer_classes: Sequence[str] = (),
        **overrides: Any,
    ) -> TrainingArguments:
        """``TrainingArguments`` for a SageMaker job: checkpoints in ``output_dir`` (the checkpoint channel), no
        external reporting, no evaluation inside the loop (the job evaluates with generation afterwards).

        With a ``parallelism`` plan: ``fsdp_full_shard`` asks the Trainer for accelerate's FSDP2
        (:func:`~stratos_train.parallel.fsdp_config`; activation checkpointing by FSDP); the other strategies get
        the Trainer's gradient checkpointing when the plan asks for it (non-reentrant: works with frozen
        embeddings under LoRA).

        Args:
            output_dir: checkpoint folder.
            max_steps: optimiser steps of this run (see :meth:`total_steps`; it depends on the data).
            save_steps: checkpoint interval, steps; default :meth:`derived_save_steps` of ``max_steps``.
            use_cpu: train on the CPU; default: when no CUDA device is present.
            layer_classes: the decoder layer class names, FSDP's wrap units (default: the model's
                ``_no_split_modules``).
            overrides: ``TrainingArguments`` fields that replace the ones derived here (e.g. ``save_strategy``).
        """
        from transformers import TrainingArguments

        if use_cpu is None:
            import torch

            use_cpu = not torch.cuda.is_available()
        derived: dict[str, Any] = dict(
            output_dir=output_dir,
            per_device_train_batch_size=self.per_device_batch_size,
            gradient_accumulation_steps=self.grad_accum,
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            max_steps=max_steps,
            warmup_steps=self.warmup_ratio,  # a float < 1 is a fraction of the steps (transformers 5)
            weight_decay=self.weight_decay,
            lr_scheduler_type=self.lr_scheduler,
            bf16=self.bf16,
            seed=self.seed,
            data_seed=self.seed,
            logging_steps=self.logging_steps,
            save_strategy="steps",
            save_steps=save_steps if save_steps is not None else self.derived_save_steps(max_steps),
            save_total_limit=2,
            report_to="none",
            remove_unused_columns=False,
            disable_tqdm=True,
            use_cpu=use_cpu,
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,
            train_sampling_strategy="group_by_length" if self.shuffle and self.group_by_length else "random",
            ddp_timeout=COLLECTIVE_TIMEOUT_S,
        )
        plan = self.parallelism
        if plan is not None and plan.strategy == "fsdp_full_shard":
            derived.update(fsdp=True, fsdp_config=fsdp_config(plan, layer_classes))
        elif plan is not None and plan.gradient_checkpointing:
            derived.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
        return TrainingArguments(**{**derived, **overrides})


#: TrainConfig's fields: their defaults are the one place a training default is written.
_TRAIN_FIELDS = TrainConfig.model_fields


@dataclass(frozen=True)
class KDLossConfig:
    """Hyperparameters of the distillation objective (:mod:`stratos_train.losses`); build it with
    :meth:`TrainConfig.kd_loss_config`. Its defaults are :class:`TrainConfig`'s (read from its fields), so
    there is one ``alpha`` default, 0.1.

    Attributes:
        divergence: ``forward_kl``, ``reverse_kl`` or ``jsd``.
        beta: JSD interpolation in [0, 1]; 0 = forward KL, 1 = reverse KL (only used by ``jsd``).
        temperature: softmax temperature T > 0 for both distributions; the divergence is scaled by T^2.
        alpha: weight of the hard-label cross-entropy in [0, 1]; 1 - alpha weights the divergence.
        chunk_size: kept positions per chunk in :func:`~stratos_train.losses.chunked_kd_loss`; peak extra
            memory is about 8 fp32 copies of a (chunk_size, vocab) block: 256 x 151936 x 4 B x 8 = 1.2 GiB at most.

    Raises:
        ValueError: a field out of range (the message names it).
    """

    divergence: Divergence = _TRAIN_FIELDS["divergence"].default
    beta: float = _TRAIN_FIELDS["beta"].default
    temperature: float = _TRAIN_FIELDS["temperature"].default
    alpha: float = _TRAIN_FIELDS["alpha"].default
    chunk_size: int = _TRAIN_FIELDS["chunk_size"].default

    def __post_init__(self) -> None:
        if self.divergence not in ("forward_kl", "reverse_kl", "jsd"):
            raise ValueError(f"divergence must be forward_kl, reverse_kl or jsd, got {self.divergence!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def effective(self) -> tuple[Divergence, float]:
        """The divergence actually computed: ``jsd`` with beta 0 or 1 is forward or reverse KL."""
        if self.divergence == "jsd" and self.beta == 0.0:
            return "forward_kl", 0.0
        if self.divergence == "jsd" and self.beta == 1.0:
            return "reverse_kl", 1.0
        return self.divergence, self.beta


def parse_hyperparameters(raw: Mapping[str, Any]) -> TrainConfig:
    """Validate SageMaker hyperparameters into a :class:`TrainConfig`.

    Keys are accepted with ``-`` or ``_``. SageMaker's own keys (``sagemaker_*``) are ignored.

    Raises:
        HyperparameterError: naming every bad hyperparameter with its value and the reason.
    """
    return _parse(raw, TrainConfig)
