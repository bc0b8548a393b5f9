"""Completion-only encoding: labels, EOS kept when pad = eos, no double BOS, padding invariance."""

from __future__ import annotations

import pytest
import torch

from stratos_train.data import CompletionCollator, encode_all, encode_example, stop_token_ids
from stratos_train.losses import IGNORE_INDEX, KDLossConfig, chunked_kd_loss
from stratos_train.models import build_tiny_model, train_tiny_tokenizer
from stratos_train.trainer import decoder_and_head, final_hidden

CORPUS = [f"What is {a} plus {b}? The sum is {a + b}." for a in range(40) for b in range(40)]


@pytest.fixture(scope="module")
def tokenizer():
    tok = train_tiny_tokenizer(CORPUS, vocab_size=300)
    tok.pad_token = tok.eos_token  # the SmolLM2 situation: pad == eos
    return tok


def test_labels_cover_only_the_completion_and_keep_eos(tokenizer):
    messages = [{"role": "user", "content": "What is 2 plus 3?"}]
    example, truncated = encode_example(tokenizer, messages, "The sum is 5.", max_seq_len=128)
    assert example is not None and not truncated
    n_prompt = sum(1 for label in example.labels if label == IGNORE_INDEX)
    completion = example.input_ids[n_prompt:]
    assert tokenizer.decode(completion).startswith("The sum is 5.")
    # The final label is the end-of-turn token even though it is also the pad token.
    assert example.labels[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert example.labels[-1] in stop_token_ids(tokenizer)


def test_no_double_bos():
    """A tokenizer that adds BOS itself AND a template that writes BOS: the sequence starts with ONE BOS."""
    from tokenizers import processors

    tok = train_tiny_tokenizer(CORPUS, vocab_size=300)
    tok.bos_token = "<|endoftext|>"
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert tok(text)["input_ids"][:2] == [bos, bos]  # the trap: default tokenisation doubles it
    example, _ = encode_example(tok, [{"role": "user", "content": "hi"}], "ok", 64)
    assert example is not None
    assert example.input_ids[0] == bos and example.input_ids[1] != bos


def test_rows_without_completion_are_dropped_and_counted(tokenizer):
    long_prompt = [{"role": "user", "content": "What is 1 plus 1? " * 30}]
    pairs = [(long_prompt, "2"), ([{"role": "user", "content": "What is 1 plus 1?"}], "2")]
    encoded, stats = encode_all(tokenizer, pairs, max_seq_len=48)
    assert len(encoded) == 1 and stats.dropped_no_completion == 1


def test_collator_masks_padding_by_position(tokenizer):
    pairs = [([{"role": "user", "content": "What is 1 plus 2?"}], "3"), ([{"role": "user", "content": "Hi"}], "4")]
    encoded, _ = encode_all(tokenizer, pairs, 64)
    batch = CompletionCollator(tokenizer.pad_token_id)(encoded)
    short = 1 if len(encoded[1].input_ids) < len(encoded[0].input_ids) else 0
    n = len(encoded[short].input_ids)
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    assert batch["labels"][short, n - 1] == tokenizer.eos_token_id


def _per_row_loss(model, batch, row):
    hidden = final_hidden(model, batch)
    _, weight = decoder_and_head(model)
    target = batch["labels"][row : row + 1, 1:]
    keep = target != IGNORE_INDEX
    kept = hidden[row : row + 1, :-1][keep]
    return chunked_kd_loss(kept, weight, target[keep], KDLossConfig(alpha=1.0)).item()


def test_extra_left_padding_never_changes_the_loss(tokenizer):
    """Prompts of 5 and 12 tokens, the short one left-padded to 12: same loss as alone."""
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, seed=3).eval()
    short = {"input_ids": [5, 17, 33, 41, 8], "labels": [IGNORE_INDEX, IGNORE_INDEX, 33, 41, 8]}
    long_ids = [9, 12, 30, 31, 32, 44, 45, 46, 47, 48, 49, 50]
    long_row = {"input_ids": long_ids, "labels": [IGNORE_INDEX] * 8 + long_ids[8:]}
    alone = CompletionCollator(tokenizer.pad_token_id)([short])
    together = CompletionCollator(tokenizer.pad_token_id, padding_side="left")([short, long_row])
    assert together["input_ids"].shape == (2, 12)
    with torch.no_grad():
        assert _per_row_loss(model, together, 0) == pytest.approx(_per_row_loss(model, alone, 0), abs=1e-5)
