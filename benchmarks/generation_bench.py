"""Greedy evaluation speed against the forward-pass roofline of this machine.

For each model (the PyPI teacher and student), one batch of the Mahjong prompts the headline evaluates, decoded
greedily for a fixed number of new tokens (no stop rule, so every row costs the same):

* ``greedy_decode_tok_s``: Stratos's decoder (:func:`stratos_train.evaluate.generate`: left-padded batch, the
  model's KV cache, finished rows dropped), under bf16 autocast over fp32 weights (what the job does);
* ``greedy_decode_bf16_weights_tok_s``: the same with the weights cast to bf16 once (no per-step casts);
* ``hf_generate_tok_s``: ``model.generate(do_sample=False)`` on the same batch and budget;
* ``roofline_tok_s``: what the decode would reach if every new token cost only its matrix multiplies at the
  machine's measured bf16 GEMM throughput: ``gemm_flops / (2 * matmul_params)`` per token, where
  ``matmul_params`` counts every weight a decode step multiplies by (decoder linears and the output
  projection; the embedding lookup is free). Attention over the cache and the prefill are extra work, so the
  ratio ``greedy / roofline`` is an upper-bound view of how much faster decoding could get.

``gemm_flops`` is measured here: ``(batch x hidden) @ (hidden x vocab)`` bf16 matmuls shaped like the teacher's
output projection, the largest matmul of a decode step.

Usage: ``python benchmarks/generation_bench.py [--json] [--models gemma-3-270m,smollm2-135m-instruct]
[--batch 32] [--new-tokens 64]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions"), str(REPO / "training_container")]


def gemm_flops(batch: int, hidden: int, vocab: int, repeats: int = 5) -> float:
    """Measured bf16 GEMM throughput, FLOP/s, of a ``(batch, hidden) @ (hidden, vocab)`` product."""
    import torch

    a = torch.randn(batch, hidden, dtype=torch.bfloat16)
    b = torch.randn(hidden, vocab, dtype=torch.bfloat16)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    seconds = (time.perf_counter() - start) / repeats
    return 2.0 * batch * hidden * vocab / seconds


def matmul_params(model: Any) -> int:
    """Weights a decode step multiplies by: every Linear (decoder and output projection), embeddings excluded
    unless tied to the output projection (then counted once, as the projection)."""
    import torch

    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, torch.nn.Linear):
        total += head.weight.numel()
    return int(total)


def measure(name: str, batch: int, new_tokens: int, flops: float) -> dict[str, Any]:
    import torch

    from stratos_train.data import render_prompt
    from stratos_train.evaluate import generate
    from stratos_train.models import load_model
    from stratos_train.tasks import get_task

    loaded = load_model(name)
    model, tokenizer = loaded.model, loaded.tokenizer
    task = get_task("mahjong-winning-tiles", prompt_style="full")
    prompts = [task.prompt(e) for e in task.examples("eval", batch, 7)]

    def timed_greedy() -> float:
        start = time.perf_counter()
        texts, _ = generate(model, tokenizer, prompts, max_new_tokens=new_tokens, batch_size=batch, bf16=True)
        seconds = time.perf_counter() - start
        produced = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return produced / seconds

    greedy = timed_greedy()
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    tokenizer.padding_side = "left"
    encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.generate(**encoded, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    hf = (out.shape[1] - encoded["input_ids"].shape[1]) * batch / (time.perf_counter() - start)
    model.to(torch.bfloat16)
    greedy_bf16 = timed_greedy()
    params = matmul_params(model)
    roofline = flops / (2.0 * params) * 1.0
    return {
        "model": name,
        "batch": batch,
        "new_tokens": new_tokens,
        "matmul_params_m": round(params / 1e6, 1),
        "greedy_decode_tok_s": round(greedy, 1),
        "greedy_decode_bf16_weights_tok_s": round(greedy_bf16, 1),
        "hf_generate_tok_s": round(hf, 1),
        "roofline_tok_s": round(roofline, 1),
        "greedy_over_roofline": round(greedy_bf16 / roofline, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    flops = gemm_flops(args.batch, 640, 262_144)
    rows = [measure(name, args.batch, args.new_tokens, flops) for name in args.models.split(",")]
    result = {"gemm_bf16_gflops": round(flops / 1e9, 1), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Greedy decoding, tokens/s (batch {args.batch}, {args.new_tokens} new tokens per row)")
    columns = (
        "model",
        "matmul_params_m",
        "greedy_decode_tok_s",
        "greedy_decode_bf16_weights_tok_s",
        "hf_generate_tok_s",
        "roofline_tok_s",
        "greedy_over_roofline",
    )
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console().print(table)
    print(f"measured bf16 GEMM: {result['gemm_bf16_gflops']} GFLOP/s")


if __name__ == "__main__":
    main()
