"""Held-out evaluation: greedy decoding that stops at the stop ids, scored by the task's scorer.

Greedy decoding is deterministic: the same weights, prompts and decoding settings give the same completions.
:func:`generate` can therefore keep them in a *completion cache* (a folder; ``cache_dir``), keyed by a SHA-256
over the model's weights (:func:`model_fingerprint`), the rendered prompts and every decoding setting, so a
frozen model (a teacher) is never decoded twice on the same prompts. Scoring always reruns on the cached text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from transformers import PreTrainedTokenizerBase

from stratos_train.data import Messages, render_prompt, stop_token_ids
from stratos_train.tasks.scoring import answer_line_done

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
        exact: per-prompt exact score (1.0 / 0.0), same order as the prompts.
    """

    accuracy: float
    partial: float
    completions: list[str] = field(default_factory=list)
    stopped: float = 0.0
    seconds: float = 0.0
    answered: float = 0.0
    exact: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "partial": self.partial, "stopped": self.stopped, "seconds": self.seconds}


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Text of one sequence of token ids, special tokens left out."""
    # One sequence in, one string out (transformers annotates the batch case's list[str] too).
    return cast(str, tokenizer.decode(ids, skip_special_tokens=True))


class _NewlineTokens:
    """Which token ids decode to text containing a newline (memoised per id)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._known: dict[int, bool] = {}

    def __contains__(self, token_id: int) -> bool:
        if token_id not in self._known:
            self._known[token_id] = "\n" in self.tokenizer.decode([token_id])
        return self._known[token_id]


def greedy_decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    done: Callable[[list[int], int], bool] | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Greedy decoding of a left-padded batch that drops each row from the batch (and its KV cache) as soon
    as it finishes, so one long completion does not keep computing every finished one.

    Same tokens as ``model.generate(do_sample=False)`` (a test compares them): positions come from the
    attention mask, the cache is the model's own ``DynamicCache`` (``batch_select_indices`` shrinks it).

    Args:
        input_ids: ``(batch, prompt_len)`` token ids, left-padded.
        attention_mask: ``(batch, prompt_len)``, 1 on real tokens.
        max_new_tokens: budget per row, tokens.
        stop_ids: token ids that end a row (not included in its output).
        done: ``(row's new token ids, newest id) -> bool``; True ends the row after that token (kept).

    Returns:
        (new token ids per row, whether each row ended on a stop id or ``done`` before the budget).
    """
    stops = set(stop_ids)
    rows = input_ids.shape[0]
    new_tokens: list[list[int]] = [[] for _ in range(rows)]
    finished = [False] * rows
    if max_new_tokens < 1 or rows == 0:
        return new_tokens, finished
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = out.cache
    next_position = positions[:, -1] + 1
    active = list(range(rows))  # original row of each batch slot
    for step in range(max_new_tokens):
        picked = out.logits[:, -1, :].argmax(-1)
        keep: list[int] = []
        for slot, token_id in enumerate(picked.tolist()):
            row = active[slot]
            if token_id in stops:
                finished[row] = True
                continue
            new_tokens[row].append(token_id)
            if done is not None and done(new_tokens[row], token_id):
                finished[row] = True
                continue
            keep.append(slot)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=input_ids.device)
            cache.batch_select_indices(index)
            mask, picked, next_position = mask[index], picked[index], next_position[index]
            active = [active[slot] for slot in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        out = model(
            input_ids=picked[:, None],
            attention_mask=mask,
            position_ids=next_position[:, None],
            cache=cache,
            use_cache=True,
        )
        next_position = next_position + 1
    return new_tokens, finished


def model_fingerprint(model: Any) -> str:
    """SHA-256 over a model's parameter and buffer names, shapes, dtypes and bytes (~1 s per GB here);
    memoised on the model object, so a model must not be trained between two calls."""
    known = getattr(model, "_stratos_fingerprint", None)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        data = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: a 0-dim tensor cannot be viewed as bytes
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    value = digest.hexdigest()
    model._stratos_fingerprint = value
    return value


def _cache_path(cache_dir: Path, model: Any, rendered: Sequence[str], settings: dict[str, Any]) -> Path:
    key = hashlib.sha256(
        json.dumps({"model": model_fingerprint(model), "prompts": list(rendered), **settings}, sort_keys=True).encode()
    ).hexdigest()
    return cache_dir / f"{key}.json"


def _write_atomic(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)  # readers never see a half-written entry


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    bf16: bool = False,
    stop_after_answer: bool = False,
    cache_dir: Path | None = None,
) -> tuple[list[str], list[bool]]:
    """Greedy completions for chat prompts, batched with left padding (longest prompts first).

    Args:
        bf16: run the forward passes under bf16 autocast (parameters stay as they are). On a CPU with
            AVX512-BF16 this is ~1.5-2x faster than fp32; greedy picks can differ from fp32 where two logits
            are within bf16 rounding.
        stop_after_answer: also end a row once it has written its final answer line (the format every task
            asks for ends there; :func:`stratos_train.tasks.scoring.answer_line_done`, checked only after a token
            that holds a newline). Such a row counts as stopped.
        cache_dir: completion cache folder (module docstring); None = no cache. The batch size does not enter
            the key: rows are decoded independently (left padding, positions from the mask).

    Rows are decoded by :func:`greedy_decode`, which drops finished rows from the batch.

    Returns:
        (texts without the stop token, whether each stopped on a stop id, or after its answer line, before the
        budget).
    """
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    model.eval()
    texts: list[str] = []
    stopped: list[bool] = []
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    cached: Path | None = None
    if cache_dir is not None:
        settings = {"max_new_tokens": max_new_tokens, "bf16": bf16, "stop_after_answer": stop_after_answer}
        cached = _cache_path(Path(cache_dir), model, rendered, {**settings, "stops": stops})
        if cached.is_file():
            doc = json.loads(cached.read_text(encoding="utf-8"))
            logger.info("completion cache hit: %d completions from %s", len(doc["texts"]), cached)
            return list(doc["texts"]), [bool(x) for x in doc["stopped"]]
    # Longest first: less padding per batch.
    order = sorted(range(len(rendered)), key=lambda i: -len(rendered[i]))
    results: dict[int, tuple[str, bool]] = {}
    newline = _NewlineTokens(tokenizer)

    def answer_done(ids: list[int], newest: int) -> bool:
        return newest in newline and answer_line_done(_decode(tokenizer, ids))

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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            new_ids, finished = greedy_decode(
                model,
                input_ids.to(device),
                mask.to(device),
                max_new_tokens=max_new_tokens,
                stop_ids=stops,
                done=answer_done if stop_after_answer else None,
            )
        for row, i in enumerate(idx):
            text = _decode(tokenizer, new_ids[row])
            results[i] = (text.rstrip("\n") if stop_after_answer and finished[row] else text, finished[row])
    for i in range(len(rendered)):
        texts.append(results[i][0])
        stopped.append(results[i][1])
    if cached is not None:
        _write_atomic(cached, {"texts": texts, "stopped": stopped})
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
    bf16: bool = False,
    stop_after_answer: bool = False,
    cache_dir: Path | None = None,
) -> EvalResult:
    """Generate for every prompt and score it.

    Args:
        score: ``(completion, example index) -> (exact 0/1, partial 0..1)``.
        bf16: bf16 autocast for generation (see :func:`generate`).
        stop_after_answer: end each generation after its final answer line (see :func:`generate`).
        cache_dir: completion cache (see :func:`generate`).
    """
    start = time.perf_counter()
    texts, stopped = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        bf16=bf16,
        stop_after_answer=stop_after_answer,
        cache_dir=cache_dir,
    )
    return score_completions(texts, stopped, score, seconds=time.perf_counter() - start, label=label)


def score_completions(
    texts: Sequence[str],
    stopped: Sequence[bool],
    score: Callable[[str, int], tuple[float, float]],
    *,
    seconds: float,
    label: str = "model",
) -> EvalResult:
    """Score completions however they were generated (a loaded model: :func:`evaluate`; an external teacher:
    ``stratos_train.job``), so every evaluation row is scored one way.

    Args:
        texts: one completion per example, in the examples' order.
        stopped: whether each ended before its token budget.
        score: ``(completion, example index) -> (exact 0/1, partial 0..1)``.
        seconds: the generation's wall time, s.
    """
    scores = [score(t, i) for i, t in enumerate(texts)]
    n = max(1, len(scores))
    result = EvalResult(
        accuracy=sum(s[0] for s in scores) / n,
        partial=sum(s[1] for s in scores) / n,
        completions=list(texts),
        stopped=sum(stopped) / n,
        seconds=seconds,
        exact=[float(s[0]) for s in scores],
    )
    logger.info("%s: accuracy %.3f partial %.3f on %d examples", label, result.accuracy, result.partial, len(texts))
    return result


def cut_after_answer(text: str) -> tuple[str, bool]:
    """``text`` up to its first closed final answer line, as :func:`generate` with ``stop_after_answer`` would
    have stopped it (checked at each newline, trailing newlines dropped), and whether it was cut there.

    For text generated elsewhere (an external teacher), which runs on past its answer line to its own end: the
    same completion is then scored as a loaded model's would be.
    """
    end = text.find("\n")
    while end != -1:
        if answer_line_done(text[: end + 1]):
            return text[: end + 1].rstrip("\n"), True
        end = text.find("\n", end + 1)
    return text, False


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
