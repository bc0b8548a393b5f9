"""The completion cache: a frozen model is never decoded twice on the same prompts and settings."""

from __future__ import annotations

import json

import torch

from stratos_train import evaluate as ev
from stratos_train.models import build_tiny_model, train_tiny_tokenizer

PROMPTS = [[{"role": "user", "content": "123m 456p?"}], [{"role": "user", "content": "1122z?"}]]


def _tiny():
    tokenizer = train_tiny_tokenizer(["123m 456p 789s 1122z Answer: 1z 2z", "which tiles?"] * 20)
    return build_tiny_model(tokenizer, seed=5), tokenizer


def test_cache_hit_returns_the_same_completions_without_decoding(tmp_path, monkeypatch) -> None:
    model, tokenizer = _tiny()
    first = ev.generate(model, tokenizer, PROMPTS, max_new_tokens=6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(ev, "greedy_decode", no_decoding)
    assert ev.generate(model, tokenizer, PROMPTS, max_new_tokens=6, cache_dir=tmp_path, batch_size=1) == first


def test_cache_key_covers_weights_prompts_and_settings(tmp_path) -> None:
    model, tokenizer = _tiny()
    ev.generate(model, tokenizer, PROMPTS, max_new_tokens=6, cache_dir=tmp_path)
    ev.generate(model, tokenizer, PROMPTS, max_new_tokens=7, cache_dir=tmp_path)
    ev.generate(model, tokenizer, PROMPTS[:1], max_new_tokens=6, cache_dir=tmp_path)
    other, _ = _tiny()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    ev.generate(other, tokenizer, PROMPTS, max_new_tokens=6, cache_dir=tmp_path)
    entries = list(tmp_path.glob("*.json"))
    assert len(entries) == 4  # budget, prompts and weights each make a new entry
    assert all(set(json.loads(p.read_text())) == {"texts", "stopped"} for p in entries)
    assert ev.model_fingerprint(model) != ev.model_fingerprint(other)


def test_fingerprint_covers_scalar_buffers() -> None:
    """Gemma 3 keeps 0-dim buffers (its embedding scale): they are hashed like any other tensor."""
    model, _ = _tiny()
    model.register_buffer("embed_scale", torch.tensor(24.0), persistent=False)
    before = ev.model_fingerprint(model)
    other, _ = _tiny()
    other.register_buffer("embed_scale", torch.tensor(25.0), persistent=False)
    assert before != ev.model_fingerprint(other)
