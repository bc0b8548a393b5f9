"""Held-out evaluation: greedy decoding that stops at the stop ids, scored by the task's scorer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from stratos_train.data import Messages, render_prompt, stop_token_ids

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Scores of one model on one evaluation set.

    Attributes:
        accuracy: mean of exact scores (1.0 correct / 0.0 wrong), fraction 0..1.
        partial: mean partial credit (e.g. F1 of a tile set), 0..1.
        completions: the generated texts (same order as the prompts).
        stopped: fraction of completions that ended with a stop token before ``max_new_tokens``.
        seconds: wall time, s.
        answered: fraction whose final answer could be parsed (answer-format compliance), set by the caller.
    """

    accuracy: float
    partial: float
    completions: list[str] = field(default_factory=list)
    stopped: float = 0.0
    seconds: float = 0.0
    answered: float = 0.0

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "partial": self.partial, "stopped": self.stopped, "seconds": self.seconds}


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> tuple[list[str], list[bool]]:
    """Greedy completions for chat prompts, batched with left padding.

    Returns:
        (texts without the stop token, whether each stopped on a stop id before the budget).
    """
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    model.eval()
    texts: list[str] = []
    stopped: list[bool] = []
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    # Longest first: less padding per batch.
    order = sorted(range(len(rendered)), key=lambda i: -len(rendered[i]))
    results: dict[int, tuple[str, bool]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        encoded = [tokenizer(rendered[i], add_special_tokens=False)["input_ids"] for i in idx]
        width = max(len(e) for e in encoded)
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            mask[row, width - len(ids) :] = 1
        device = next(model.parameters()).device
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=pad_id,
        )
        for row, i in enumerate(idx):
            new = out[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stops), None)
            results[i] = (
                tokenizer.decode(new[:cut] if cut is not None else new, skip_special_tokens=True),
                cut is not None,
            )
    for i in range(len(rendered)):
        texts.append(results[i][0])
        stopped.append(results[i][1])
    return texts, stopped


def evaluate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    score: Callable[[str, int], tuple[float, float]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    label: str = "model",
) -> EvalResult:
    """Generate for every prompt and score it.

    Args:
        score: ``(completion, example index) -> (exact 0/1, partial 0..1)``.
    """
    start = time.perf_counter()
    texts, stopped = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scores = [score(t, i) for i, t in enumerate(texts)]
    n = max(1, len(scores))
    result = EvalResult(
        accuracy=sum(s[0] for s in scores) / n,
        partial=sum(s[1] for s in scores) / n,
        completions=texts,
        stopped=sum(stopped) / n,
        seconds=time.perf_counter() - start,
    )
    logger.info("%s: accuracy %.3f partial %.3f on %d examples", label, result.accuracy, result.partial, len(texts))
    return result


@torch.no_grad()
def heldout_kl(
    teacher: Any,
    student: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[Messages, str]],
    *,
    vocab_size: int,
    max_seq_len: int = 512,
    batch_size: int = 8,
    chunk_rows: int = 256,
) -> float:
    """Mean per-token forward KL(p_teacher || p_student), nats, over the completion tokens of held-out
    (prompt, reference) pairs — how close the student's distributions are to the teacher's where it matters.

    Both models must share ``tokenizer``'s vocabulary; logits are compared on ``[:vocab_size]``.
    """
    from stratos_train.data import CompletionCollator, encode_all
    from stratos_train.losses import IGNORE_INDEX, divergence_per_token
    from stratos_train.trainer import decoder_and_head, final_hidden

    encoded, _ = encode_all(tokenizer, pairs, max_seq_len)
    collate = CompletionCollator(tokenizer.pad_token_id)
    tw = decoder_and_head(teacher)[1][:vocab_size].float()
    sw = decoder_and_head(student)[1][:vocab_size].float()
    total, count = 0.0, 0
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size])
        keep = batch["labels"][:, 1:] != IGNORE_INDEX
        th = final_hidden(teacher, batch)[:, :-1][keep].float()
        sh = final_hidden(student, batch)[:, :-1][keep].float()
        for row in range(0, th.shape[0], chunk_rows):
            zt, zs = th[row : row + chunk_rows] @ tw.T, sh[row : row + chunk_rows] @ sw.T
            total += float(divergence_per_token(zs, zt, "forward_kl").sum())
        count += int(keep.sum())
    return total / max(1, count)
