"""Evaluation ends a generation after its final answer line; bf16 autocast generation runs."""

from __future__ import annotations

import pytest
import torch

from stratos_train.evaluate import generate, greedy_decode
from stratos_train.models import build_tiny_model, train_tiny_tokenizer
from stratos_train.tasks.scoring import answer_line_done
from tests.helpers.tiny_sft import fit

CORPUS = [f"What is {a} plus {b}?\nAnswer: {a + b}\nanother line of chatter." for a in range(20) for b in range(20)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer(CORPUS, vocab_size=320)


@pytest.mark.parametrize(
    ("text", "done"),
    [
        ("steps\nAnswer: 3m 6m\n", True),
        ("**Answer:** 42\nand more", True),
        ("  answer: none\n", True),
        ("steps\nAnswer: 3m 6m", False),  # still being written
        ("Answer:\n", False),  # empty
        ("so the answer is 4\n", False),  # not an answer line
    ],
)
def test_answer_line_done(text, done):
    assert answer_line_done(text) is done


def _batch(tokenizer, texts):
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(texts), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, width - len(e) :] = torch.tensor(e)
        mask[row, width - len(e) :] = 1
    return ids, mask


@pytest.mark.parametrize("stop_on", [None, "frequent"])
def test_greedy_decode_matches_transformers_generate(tokenizer, stop_on):
    """Same tokens as model.generate(do_sample=False) on a left-padded batch, also when rows finish at
    different steps and are dropped from the batch and the KV cache."""
    model = build_tiny_model(tokenizer, seed=11, hidden=64).eval()
    ids, mask = _batch(tokenizer, ["What is 1 plus 2?", "What is 13 plus 19? Answer", "What"])
    width = ids.shape[1]
    with torch.no_grad():
        reference = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    rows = [r[width:].tolist() for r in reference]
    stops: list[int] = []
    if stop_on:  # a token the rows pick at different steps: they end at different lengths
        seen = [t for r in rows for t in r[2:]]
        stops = [max(set(seen), key=seen.count)]
        with torch.no_grad():
            reference = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
        rows = [r[width:].tolist() for r in reference]
    with torch.no_grad():
        ours, finished = greedy_decode(model, ids, mask, max_new_tokens=12, stop_ids=stops)
    expected = [r[: r.index(stops[0])] if stops and stops[0] in r else r for r in rows]
    expected = [[t for t in r if t != tokenizer.pad_token_id] for r in expected]
    assert ours == expected
    assert finished == [bool(stops) and stops[0] in r for r in rows]
    if stop_on:
        assert len({len(r) for r in ours}) > 1, "rows should finish at different steps"


def _trained_chatter_model(tokenizer):
    """A tiny model trained to answer, then keep talking after the answer line."""
    pairs = [
        ([{"role": "user", "content": f"What is {a} plus {a}?"}], f"Answer: {2 * a}\nanother line of chatter.")
        for a in range(6)
    ]
    return fit(build_tiny_model(tokenizer, seed=3, hidden=64), tokenizer, pairs, steps=150, batch=6), pairs


def test_generation_stops_after_the_answer_line(tokenizer):
    model, pairs = _trained_chatter_model(tokenizer)
    prompts = [pairs[2][0], pairs[4][0]]
    full, _ = generate(model, tokenizer, prompts, max_new_tokens=40)
    assert all("chatter" in t for t in full), full
    cut, stopped = generate(model, tokenizer, prompts, max_new_tokens=40, stop_after_answer=True)
    assert [t.strip() for t in cut] == ["Answer: 4", "Answer: 8"], cut
    assert stopped == [True, True]
    # bf16 autocast: same greedy answers on this easy model (parameters stay fp32).
    cut_bf16, _ = generate(model, tokenizer, prompts, max_new_tokens=40, stop_after_answer=True, bf16=True)
    assert next(model.parameters()).dtype == torch.float32
    assert [t.strip() for t in cut_bf16] == ["Answer: 4", "Answer: 8"], cut_bf16
