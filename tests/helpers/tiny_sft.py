"""Short supervised fine-tuning runs of tiny config-built models for unit tests (CPU, seconds)."""

from __future__ import annotations

import tempfile
from typing import Any

from transformers import PrinterCallback, TrainingArguments

from stratos_train.config import TrainConfig
from stratos_train.data import CompletionCollator, ListDataset, encode_all
from stratos_train.trainer import DistillationTrainer


def tiny_config(batch: int = 8, lr: float = 1e-3, grad_accum: int = 1) -> TrainConfig:
    """A test's training config: constant LR, no warm-up, random (not length-grouped) order, rare logging."""
    return TrainConfig(
        per_device_batch_size=batch,
        grad_accum=grad_accum,
        learning_rate=lr,
        epochs=1,
        warmup_ratio=0.0,
        weight_decay=0.0,
        lr_scheduler="constant",
        bf16=False,
        seed=0,
        logging_steps=1000,
        group_by_length=False,
    )


def tiny_args(
    output_dir: str, batch: int = 8, steps: int = 1, lr: float = 1e-3, grad_accum: int = 1, **overrides: Any
) -> TrainingArguments:
    """:meth:`TrainConfig.training_arguments` of :func:`tiny_config` for a test: no checkpoints, CPU;
    ``overrides`` are ``TrainingArguments`` fields that replace any of those (e.g. ``logging_steps``, ``optim``)."""
    config = tiny_config(batch=batch, lr=lr, grad_accum=grad_accum)
    return config.training_arguments(
        output_dir, max_steps=steps, save_steps=100_000, use_cpu=True, **{"save_strategy": "no", **overrides}
    )


def fit(model: Any, tokenizer: Any, pairs: list[Any], steps: int, batch: int, lr: float = 3e-3) -> Any:
    """Fine-tune ``model`` in place on ``(messages, completion)`` pairs with the completion-only loss."""
    encoded, _ = encode_all(tokenizer, pairs, 64)
    with tempfile.TemporaryDirectory() as out:
        trainer = DistillationTrainer(
            model=model,
            args=tiny_args(out, batch=batch, steps=steps, lr=lr),
            train_dataset=ListDataset(encoded),
            data_collator=CompletionCollator(tokenizer.pad_token_id),
            kd_config=TrainConfig().kd_loss_config(cross_entropy_only=True),
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return model
