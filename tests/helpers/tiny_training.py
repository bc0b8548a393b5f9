"""A tiny, deterministic distillation run used by the trainer tests (in-process and under torchrun).

Run as ``python -m tests.helpers.tiny_training OUT.json [--batch B --accum A --kd --fsdp]``: trains a 2-layer
Llama student on arithmetic prompts for a few steps (sequential order, SGD) and writes the loss trajectory and a
parameter checksum to OUT.json (rank 0 only). ``--fsdp`` (under torchrun): the job's ``fsdp_full_shard``
arguments, the teacher sharded like the student, the parameters gathered whole to rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

import torch
from transformers import PrinterCallback

from stratos_contract.parallelism import ParallelismPlan
from stratos_train.config import TrainConfig
from stratos_train.data import CompletionCollator, ListDataset, encode_all
from stratos_train.models import build_tiny_model, train_tiny_tokenizer
from stratos_train.parallel import decoder_layer_classes, fsdp_config, full_state_dict, shard_frozen
from stratos_train.trainer import DistillationTrainer, MetricLinesCallback
from tests.helpers.tiny_sft import tiny_args

CORPUS = [f"What is {a} plus {b}? The sum is {a + b}." for a in range(30) for b in range(30)]


def make_data(tokenizer: Any, rows: int = 32) -> list[Any]:
    pairs = []
    for i in range(rows):
        a, b = (i * 7) % 23, (i * 5) % 19
        # Completions of different lengths, so per-row vs per-token normalisation would differ.
        completion = f"The sum is {a + b}." + (" Yes." * (i % 4))
        pairs.append(([{"role": "user", "content": f"What is {a} plus {b}?"}], completion))
    encoded, _ = encode_all(tokenizer, pairs, 96)
    return encoded


def run(batch: int, accum: int, steps: int, kd: bool, lr: float = 0.5, fsdp: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    tokenizer = train_tiny_tokenizer(CORPUS, vocab_size=300)
    student = build_tiny_model(tokenizer, seed=1)
    teacher = build_tiny_model(tokenizer, seed=2) if kd else None
    data = make_data(tokenizer)
    extra: dict[str, Any] = {}
    if fsdp:
        plan = ParallelismPlan(strategy="fsdp_full_shard", devices_per_node=int(os.environ["WORLD_SIZE"]))
        extra = {"fsdp": True, "fsdp_config": fsdp_config(plan, decoder_layer_classes(student))}
    with tempfile.TemporaryDirectory() as out:
        args = tiny_args(
            out,
            batch=batch,
            steps=steps,
            lr=lr,
            grad_accum=accum,
            logging_steps=1,
            optim="sgd",
            max_grad_norm=0.0,
            **extra,
        )
        if fsdp and teacher is not None:
            shard_frozen(teacher)
        ref: list[DistillationTrainer] = []
        callback = MetricLinesCallback(ref)
        trainer = DistillationTrainer(
            model=student,
            args=args,
            train_dataset=ListDataset(data),
            data_collator=CompletionCollator(tokenizer.pad_token_id),
            teacher=teacher,
            kd_config=TrainConfig(temperature=2.0, alpha=0.2).kd_loss_config(cross_entropy_only=not kd),
            shuffle=False,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)
        ref.append(trainer)
        trainer.train()
    if fsdp:  # gather whole parameters to rank 0, in the model's own order
        state = full_state_dict(trainer.model)
        names = [name.replace("_checkpoint_wrapped_module.", "") for name, _ in student.named_parameters()]
        tensors = [state[name] for name in names] if state else []
    else:
        tensors = [p.detach() for p in student.parameters()]
    params = torch.cat([t.flatten() for t in tensors]) if tensors else torch.zeros(0)
    return {
        "losses": [h["train_loss"] for h in callback.history if "train_loss" in h and "train_runtime" not in h],
        "param_sum": float(params.double().sum()),
        "param_abs": float(params.double().abs().sum()),
        "params": params.tolist()[:2000],
        "sharded": type(trainer.model).__name__.startswith("FSDP"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--kd", action="store_true")
    parser.add_argument("--fsdp", action="store_true")
    a = parser.parse_args()
    result = run(a.batch, a.accum, a.steps, a.kd, fsdp=a.fsdp)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(a.out, "w") as fh:
            json.dump(result, fh)
    if torch.distributed.is_initialized():
        # Every rank leaves the group together: a rank that exits while gloo's threads still run aborts
        # ("terminate called without an active exception"), which torchrun reports as a failed job.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
