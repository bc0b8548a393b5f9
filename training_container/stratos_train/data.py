"""From (chat prompt, completion) pairs to padded training batches with completion-only labels.

Conventions (the Hugging Face causal-LM ones): ``labels`` is aligned with ``input_ids``; the model at
position ``i`` predicts ``labels[i + 1]``; ``-100`` marks tokens that do not count. Only completion tokens
(the assistant's answer, including its end-of-turn token) count.

Pitfalls handled here:

* **double BOS**: the chat template already writes BOS where the model wants one, so the rendered text is
  tokenised with ``add_special_tokens=False``;
* **pad = eos** (SmolLM2 pads with ``<|im_end|>``): labels are masked by POSITION (from the lengths), never
  by comparing ids to the pad id, so the real end-of-turn token stays a label and the student learns to stop;
* **padding side**: the collator returns ``position_ids`` computed from the attention mask, so left padding
  gives the same loss as no padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from transformers import PreTrainedTokenizerBase

from stratos_train.losses import IGNORE_INDEX

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised training sequence.

    Attributes:
        input_ids: prompt + completion token ids.
        labels: same length; ``-100`` on prompt tokens.
        index: position in the training set (keys the offline teacher top-k cache); -1 when unset.
        source: position of the (prompt, completion) pair it was encoded from (:func:`encode_all` drops rows, so
            it can differ from ``index``); -1 when unset.
        completion_tokens: labels that count (>= 1).
    """

    input_ids: list[int]
    labels: list[int]
    index: int = -1
    source: int = -1

    @property
    def completion_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass
class EncodeStats:
    """What encoding dropped or cut, for the metrics."""

    encoded: int = 0
    dropped_no_completion: int = 0
    truncated: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    template_fallbacks: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> str:
    """The prompt as the model sees it, ending with the assistant turn's opening (generation prompt)."""
    # tokenize=False: the rendered text (transformers annotates the union of every mode's return)
    return cast(str, tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every token id that ends an assistant turn: EOS plus chat end markers the vocabulary has."""
    vocab = tokenizer.get_vocab()
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for marker in ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "</s>", "<eos>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return sorted(i for i in ids if i is not None)


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    completion: str,
    max_seq_len: int,
    stops: Sequence[int] | None = None,
) -> tuple[EncodedExample | None, bool]:
    """Tokenise one example with completion-only labels.

    The assistant turn is rendered by the tokenizer's own chat template (so it ends with the model's
    end-of-turn token); anything after the last stop token (a trailing newline) is dropped. When the prompt
    rendering is not a prefix of the full rendering (a few templates rewrite earlier turns), the completion is
    appended to the prompt with an explicit EOS instead.

    Args:
        tokenizer: with a chat template.
        messages: the prompt turns (system/user/assistant few-shot turns), without the answer.
        completion: the assistant's answer text (reasoning + final answer).
        max_seq_len: the sequence budget, tokens. The prompt is kept whole when it fits; the completion is cut
            at the budget (counted as truncated).
        stops: :func:`stop_token_ids` of the tokenizer, when the caller has them (reading the vocabulary costs
            ~40 ms for a 49k-token one, more than the rest of the encoding).

    Returns:
        ``(example or None, truncated)``; ``None`` when no completion token fits (the caller counts it).
    """
    prompt_text = render_prompt(tokenizer, messages)
    full_text = cast(
        str, tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": completion}], tokenize=False)
    )
    stop_set = set(stop_token_ids(tokenizer) if stops is None else stops)
    prompt_ids: list[int] = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if full_text.startswith(prompt_text):
        completion_ids: list[int] = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
        last_stop = max((i for i, t in enumerate(completion_ids) if t in stop_set), default=None)
        if last_stop is None:
            completion_ids = [*completion_ids, tokenizer.eos_token_id]
        else:
            completion_ids = completion_ids[: last_stop + 1]
    else:
        completion_ids = [*tokenizer(completion, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    room = max_seq_len - len(prompt_ids)
    truncated = len(completion_ids) > room
    completion_ids = completion_ids[: max(room, 0)]
    if not completion_ids:
        return None, truncated
    input_ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return EncodedExample(input_ids, labels), truncated


def encode_all(
    tokenizer: PreTrainedTokenizerBase, pairs: Iterable[tuple[Messages, str]], max_seq_len: int
) -> tuple[list[EncodedExample], EncodeStats]:
    """Encode many (messages, completion) pairs; rows with no completion token are dropped and counted."""
    out: list[EncodedExample] = []
    stats = EncodeStats()
    stops = stop_token_ids(tokenizer)
    for source, (messages, completion) in enumerate(pairs):
        example, truncated = encode_example(tokenizer, messages, completion, max_seq_len, stops)
        stats.truncated += int(truncated)
        if example is None:
            stats.dropped_no_completion += 1
            continue
        out.append(EncodedExample(example.input_ids, example.labels, len(out), source))
        stats.encoded += 1
        stats.completion_tokens += example.completion_tokens
        stats.total_tokens += len(example.input_ids)
    return out, stats


@dataclass
class CompletionCollator:
    """Pads a list of :class:`EncodedExample` (or dicts with input_ids/labels) into a batch.

    Returns ``input_ids``, ``attention_mask``, ``position_ids`` and ``labels``, each ``(batch, seq)`` int64.
    Padding positions get ``pad_token_id`` in inputs, 0 in the mask, ``-100`` in labels (by position).
    """

    pad_token_id: int
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[EncodedExample | dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [
            (f.input_ids, f.labels) if isinstance(f, EncodedExample) else (f["input_ids"], f["labels"])
            for f in features
        ]
        width = max(len(ids) for ids, _ in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(rows)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (ids, labs) in enumerate(rows):
            n = len(ids)
            sl = slice(width - n, width) if self.padding_side == "left" else slice(0, n)
            input_ids[i, sl] = torch.tensor(ids, dtype=torch.long)
            labels[i, sl] = torch.tensor(labs, dtype=torch.long)
            mask[i, sl] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        batch_out = {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids, "labels": labels}
        indices = [f.index if isinstance(f, EncodedExample) else int(f.get("index", -1)) for f in features]
        if all(i >= 0 for i in indices):
            batch_out["example_index"] = torch.tensor(indices, dtype=torch.long)
        return batch_out


class ListDataset(torch.utils.data.Dataset[EncodedExample]):
    """A list of encoded examples as a torch Dataset."""

    def __init__(self, examples: Sequence[EncodedExample]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.examples[index]
