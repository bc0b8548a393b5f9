"""Top-k distillation from an endpoint teacher: its own verified generations as targets, its top-k
log-probabilities as the distribution to match.

A teacher behind an endpoint cannot be run on our training rows (no teacher forcing through a ``generate`` API),
but it can be asked to answer each training prompt and to list, at every token it generates, its ``k`` likeliest
tokens with their log-probabilities (TGI's ``top_n_tokens``). That is sequence-level KD (Kim & Rush 2016, "Sequence-
Level Knowledge Distillation": train on the teacher's own outputs) with token-level top-k KD on top of it (the
recipe hosted-API distillation uses, since providers return about 20 log-probabilities at most):

1. **Targets** (:func:`teacher_targets`): each training prompt's target is the teacher's greedy answer when the
   task's scorer marks it correct (the answer is verified, as every Knowledge Injection target is), else the
   task's reference target; a reference row learns by cross-entropy alone.
2. **Token space** (:func:`check_token_space`): the teacher's token ids must be the student's. On the replies to
   the first training prompts, every generated id must be inside the student's vocabulary, the student's
   tokenizer must decode the generated ids to the very text the endpoint answered, and at least half the answers
   must re-tokenise, in the student's chat turn, to the endpoint's own ids (else top-k has no position to land
   on). One failure and the distributions cannot be compared id by id: the job falls back to Knowledge Injection
   (``auto``) or refuses a forced alignment.
3. **Positions** (:func:`align_topk`): the student re-tokenises each target with its chat template; the teacher's
   distributions are used on the longest prefix where the student's completion ids equal the teacher's generated
   ids (usually all of them, the end-of-turn token included), and every later position (after a tokenisation
   difference, or on a reference row) gets a one-hot target on the student's own label, whose forward KL equals
   the cross-entropy. So the loss is forward KL to the renormalised teacher top-k where the teacher spoke, and
   cross-entropy elsewhere (:func:`~stratos_train.losses.topk_kd_loss_per_token`).

The result is the trainer's top-k cache format (``(values (kept, k) fp32, indices (kept, k) int64)`` per row):
the values are log-probabilities, which differ from logits by a per-position constant, so the renormalised
softmax over them is the same.

Bias: the teacher's tail mass beyond its top-k is dropped (recorded as ``teacher_topk_tail_mass``, the mean of
``1 - sum(exp(logprob))`` over the top-k at the teacher's positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stratos_train.data import EncodedExample
from stratos_train.losses import IGNORE_INDEX
from stratos_train.tasks.base import Example, Message, Task
from stratos_train.teachers import TeacherReply

#: The value of the filler entries of a one-hot target row: exp(-1e4) is exactly 0 in fp32, so after the
#: renormalisation the label carries probability 1, and 0 x (finite) keeps the loss finite (-inf would give NaN).
ONE_HOT_FILL = -1.0e4
#: Replies the token-space check reads (the first training prompts' replies, which training reuses from the cache).
TOKEN_CHECK_REPLIES = 4


@dataclass(frozen=True)
class TokenSpaceCheck:
    """Whether an endpoint teacher's token ids are the student's (module docstring, step 2).

    Attributes:
        replies: replies compared (those that answered with tokens and top-k), count.
        tokens: generated token ids compared, count.
        mismatched: replies whose generated ids, decoded by the student's tokenizer, are not the endpoint's text.
        out_of_vocab: generated ids outside the student's real vocabulary, count (alternatives outside it are
            only dropped at training time).
        without_topk: replies that listed no top-k alternatives or no generated tokens (the container does not
            return them), count.
        first_mismatch: the first mismatch, as ``endpoint text vs student decoding``, for the message.
        failed: replies that failed (stop ``error`` or ``filtered``), count.
        first_failure: the first failed reply's detail (e.g. the container refusing ``top_n_tokens``).
        aligned: replies whose generated ids equal the student's own encoding of their answer (what top-k KD can
            use), count; None when not measured.
    """

    replies: int
    tokens: int
    mismatched: int
    out_of_vocab: int
    without_topk: int
    first_mismatch: str = ""
    failed: int = 0
    first_failure: str = ""
    aligned: int | None = None

    @property
    def ok(self) -> bool:
        """True when replies were compared, every one matched, and (when measured) at least half align."""
        if not self.replies or self.mismatched or self.out_of_vocab or self.without_topk:
            return False
        return self.aligned is None or 2 * self.aligned >= self.replies

    @property
    def why(self) -> str:
        """Why the check failed, in words ("" when it passed)."""
        if self.without_topk:
            return f"{self.without_topk} replies came without top-k log-probabilities or token ids"
        if self.out_of_vocab:
            return f"{self.out_of_vocab} of {self.tokens} generated token ids are outside the student's vocabulary"
        if self.mismatched:
            return (
                f"{self.mismatched} of {self.replies} replies' token ids decode to other text with the student's "
                f"tokenizer ({self.first_mismatch})"
            )
        if not self.replies:
            why = f": {self.first_failure}" if self.first_failure else ""
            return f"no reply to compare ({self.failed} replies failed, the others were empty){why}"
        if self.aligned is not None and 2 * self.aligned < self.replies:
            return (
                f"only {self.aligned} of {self.replies} answers re-tokenise to the endpoint's ids in the student's "
                "chat turn"
            )
        return ""


def check_token_space(
    replies: Sequence[TeacherReply],
    tokenizer: object,
    vocab_size: int,
    labels: Sequence[Sequence[int] | None] | None = None,
) -> TokenSpaceCheck:
    """Compare what an endpoint generated with the student's tokenizer (module docstring, step 2).

    Per reply that answered: its generated ids must lie in the student's vocabulary, and the student's tokenizer
    must decode them (special tokens skipped) to the endpoint's own text, whitespace at the ends aside. The texts
    of single tokens are not compared: TGI writes each as the difference of two decodings, which differs from a
    lone ``decode([id])`` for SentencePiece and byte-fallback tokens while the ids agree. With ``labels`` (per
    reply, the student's completion labels for its answer, or None), a reply also counts as ``aligned`` when its
    generated ids, up to its end, are exactly those labels' first ids.

    Replies that failed (stop ``error`` / ``filtered``) are counted in ``failed``; a reply without ``tokens`` or
    ``top_logprobs`` counts in ``without_topk``.

    Args:
        replies: the endpoint's replies (asked with ``top_k`` > 0).
        tokenizer: the student's tokenizer (``decode``).
        vocab_size: the student's real vocabulary size.
        labels: as above, one per reply.
    """
    compared = tokens = mismatched = out_of_vocab = without = failed = aligned = 0
    first = first_failure = ""
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    for i, reply in enumerate(replies):
        if reply.stop in ("error", "filtered"):
            failed += 1
            first_failure = first_failure or f"{reply.stop}: {reply.detail}"[:300]
            continue
        if not reply.tokens or not reply.top_logprobs or len(reply.top_logprobs) != len(reply.tokens):
            without += 1
            continue
        compared += 1
        ids = [token_id for token_id, _, _ in reply.tokens]
        tokens += len(ids)
        outside = sum(1 for token_id in ids if token_id >= vocab_size)
        out_of_vocab += outside
        if outside:
            continue
        decoded = str(tokenizer.decode(ids, skip_special_tokens=True))  # type: ignore[attr-defined]
        if decoded.strip() != reply.text.strip():
            mismatched += 1
            first = first or f"endpoint {reply.text.strip()[:60]!r} vs student {decoded.strip()[:60]!r}"
            continue
        own = labels[i] if labels is not None and i < len(labels) else None
        if own is not None:
            stats = SequenceKDStats()
            align_topk(own, reply, 1, stats)
            content = sum(1 for token_id in ids if token_id not in special)  # its end token may differ
            aligned += int(stats.positions_teacher >= min(content, len(own)))
    return TokenSpaceCheck(
        compared,
        tokens,
        mismatched,
        out_of_vocab,
        without,
        first,
        failed,
        first_failure,
        aligned if labels is not None else None,
    )


@dataclass
class SequenceKDStats:
    """What the top-k targets were made of, for ``metrics.json``.

    Attributes:
        rows_teacher: rows whose target is the teacher's verified answer, count.
        rows_reference: rows whose target is the task's reference (teacher wrong, failed or cut), count.
        reference_reasons: why, per reason (``answer differs``, ``error``, ``filtered``, ``no top-k``).
        positions: completion positions of the encoded rows, count.
        positions_teacher: positions carrying the teacher's top-k (the rest are one-hot), count.
        tail_mass_sum: sum over teacher positions of ``1 - sum(exp(top-k logprobs))`` (mean: / positions_teacher).
    """

    rows_teacher: int = 0
    rows_reference: int = 0
    reference_reasons: dict[str, int] | None = None
    positions: int = 0
    positions_teacher: int = 0
    tail_mass_sum: float = 0.0

    @property
    def tail_mass(self) -> float | None:
        """Mean probability mass outside the teacher's top-k at its positions, 0..1 (None without any)."""
        return self.tail_mass_sum / self.positions_teacher if self.positions_teacher else None


def teacher_targets(
    task: Task, examples: Sequence[Example], replies: Sequence[TeacherReply]
) -> tuple[list[tuple[list[Message], str]], list[TeacherReply | None], SequenceKDStats]:
    """The training pairs (module docstring, step 1): the teacher's answer where the task scores it correct and it
    came with its tokens and top-k, else the reference target.

    Returns:
        ``(pairs, replies used (None for a reference row), stats)``, in the examples' order.

    Raises:
        ValueError: ``replies`` and ``examples`` differ in length.
    """
    if len(replies) != len(examples):
        raise ValueError(f"{len(replies)} replies for {len(examples)} examples")
    stats = SequenceKDStats(reference_reasons={})
    pairs: list[tuple[list[Message], str]] = []
    used: list[TeacherReply | None] = []
    for example, reply in zip(examples, replies, strict=True):
        why = ""
        if reply.stop in ("error", "filtered"):
            why = reply.stop
        elif not reply.tokens or not reply.top_logprobs:
            why = "no top-k"
        elif not reply.text.strip() or not task.score(example, reply.text).correct:
            why = "answer differs"
        if why:
            stats.rows_reference += 1
            assert stats.reference_reasons is not None
            stats.reference_reasons[why] = stats.reference_reasons.get(why, 0) + 1
            pairs.append((task.prompt(example), task.target(example)))
            used.append(None)
        else:
            stats.rows_teacher += 1
            pairs.append((task.prompt(example), reply.text))  # as written: its ids are the teacher's
            used.append(reply)
    return pairs, used, stats


def completion_labels(row: EncodedExample) -> list[int]:
    """The row's kept labels in the trainer's order (position ``i`` predicts ``labels[i + 1]``)."""
    return [label for label in row.labels[1:] if label != IGNORE_INDEX]


def align_topk(
    labels: Sequence[int],
    reply: TeacherReply | None,
    k: int,
    stats: SequenceKDStats | None = None,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row's top-k target (module docstring, step 3): ``(values (kept, k) fp32 log-probabilities, indices
    (kept, k) int64)`` for the ``kept = len(labels)`` completion positions.

    A position takes the teacher's alternatives while every generated id so far equals the student's label
    (padded with :data:`ONE_HOT_FILL` entries on the label when the endpoint listed fewer than ``k``, or listed
    ids at or above ``vocab_size``, which the student's logits do not have); every other position is one-hot on
    the label.
    """
    kept = len(labels)
    values = torch.full((kept, k), ONE_HOT_FILL, dtype=torch.float32)
    values[:, 0] = 0.0
    indices = torch.tensor(list(labels), dtype=torch.long).reshape(kept, 1).repeat(1, k)
    matched = 0
    if reply is not None and reply.tokens and reply.top_logprobs:
        for j, label in enumerate(labels):
            if j >= len(reply.tokens) or j >= len(reply.top_logprobs) or reply.tokens[j][0] != label:
                break
            alternatives = [a for a in reply.top_logprobs[j] if vocab_size is None or a[0] < vocab_size][:k]
            values[j] = ONE_HOT_FILL
            indices[j] = label
            for slot, (token_id, _, logprob) in enumerate(alternatives):
                values[j, slot] = logprob
                indices[j, slot] = token_id
            matched += 1
            if stats is not None and alternatives:
                stats.tail_mass_sum += max(0.0, 1.0 - float(torch.tensor([a[2] for a in alternatives]).exp().sum()))
    if stats is not None:
        stats.positions += kept
        stats.positions_teacher += matched
    return values, indices


def endpoint_topk_cache(
    encoded: Sequence[EncodedExample],
    used: Sequence[TeacherReply | None],
    k: int,
    stats: SequenceKDStats | None = None,
    vocab_size: int | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The trainer's top-k cache for ``encoded`` (each row's ``source`` is its pair's position in ``used``;
    ``vocab_size``: :func:`align_topk`'s).

    Raises:
        ValueError: a row has no ``source``, or ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    cache = []
    for row in encoded:
        if row.source < 0:
            raise ValueError("an encoded row without its pair's position (source)")
        cache.append(align_topk(completion_labels(row), used[row.source], k, stats, vocab_size))
    return cache
