"""LoRA merge equals the adapter model; a student trained with pad = eos still learns to stop."""

from __future__ import annotations

import pytest
import torch

from stratos_train.evaluate import generate
from stratos_train.lora import apply_lora, merge_for_deployment, resolve_targets
from stratos_train.models import build_tiny_model, keep_layer_indices, train_tiny_tokenizer
from tests.helpers.tiny_sft import fit

CORPUS = [f"What is {a} plus {b}? The sum is {a + b}." for a in range(30) for b in range(30)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer(CORPUS, vocab_size=300)


def test_merged_logits_equal_adapter_logits(tokenizer):
    model = build_tiny_model(tokenizer, seed=4)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, targets="auto")
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero; make the adapter matter
    ids = torch.tensor([tokenizer("What is 3 plus 4?")["input_ids"]])
    with torch.no_grad():
        adapter_logits = peft_model(input_ids=ids).logits
        base_logits = peft_model.get_base_model()(input_ids=ids).logits  # adapters still active here
        merged = merge_for_deployment(peft_model, dtype=torch.float32)
        merged_logits = merged(input_ids=ids).logits
    assert torch.allclose(adapter_logits, base_logits)
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-4)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_lora_targets(tokenizer):
    model = build_tiny_model(tokenizer)
    assert resolve_targets(model, "auto") == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert resolve_targets(model, "all-linear") == "all-linear"
    with pytest.raises(ValueError, match="match no module"):
        resolve_targets(model, ["query_key_value"])


def test_keep_layer_indices():
    assert keep_layer_indices(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert keep_layer_indices(30, 1) == [29]
    with pytest.raises(ValueError):
        keep_layer_indices(4, 5)


def test_student_trained_with_pad_equal_eos_learns_to_stop():
    """pad == eos: masking labels by id would hide the end-of-turn token; ours masks by position."""
    tok = train_tiny_tokenizer(CORPUS, vocab_size=300)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    model = build_tiny_model(tok, seed=5, hidden=64)
    pairs = [([{"role": "user", "content": f"What is {a} plus {a}?"}], f"{2 * a}") for a in range(8)]
    fit(model, tok, pairs, steps=120, batch=8)
    texts, stopped = generate(model, tok, [pairs[3][0]], max_new_tokens=20)
    assert stopped == [True], texts
    assert texts[0].strip() == "6"
