"""LoRA through peft: target modules per architecture, and merging for deployment.

Merging folds ``W + (alpha / r) B A`` into the base weights, so the deployed model is a plain
``*ForCausalLM`` with no peft dependency at serving time (Hu et al. 2021, "LoRA", section 4.1).
"""

from __future__ import annotations

from typing import Any

import torch

#: Attention and MLP projections by ``config.model_type``. Matching all of them ("all linear layers except
#: the output head") gives the best LoRA quality in QLoRA's ablations (Dettmers et al. 2023, section 4).
TARGETS_BY_ARCH: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}


def resolve_targets(model: Any, targets: list[str] | str) -> list[str] | str:
    """Target module names for ``model``: explicit list, ``"all-linear"`` (peft's keyword), or ``"auto"``.

    Raises:
        ValueError: ``"auto"`` on an architecture with no entry in :data:`TARGETS_BY_ARCH`, or explicit names
            that match no module of the model.
    """
    if targets == "all-linear":
        return "all-linear"
    if targets == "auto":
        model_type = model.config.model_type
        if model_type not in TARGETS_BY_ARCH:
            raise ValueError(f"no LoRA targets known for model_type {model_type!r}; pass lora_targets explicitly")
        return TARGETS_BY_ARCH[model_type]
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"lora_targets {missing} match no module of this {model.config.model_type} model")
    return list(targets)


def apply_lora(model: Any, r: int, alpha: float, dropout: float, targets: list[str] | str) -> Any:
    """Wrap ``model`` with trainable LoRA adapters; base weights frozen. Returns the ``PeftModel``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; it only scales by alpha / r, so a float works
        lora_dropout=dropout,
        target_modules=resolve_targets(model, targets),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, config)


def merge_for_deployment(model: Any, dtype: torch.dtype = torch.bfloat16) -> Any:
    """Merge LoRA adapters into the base weights (when present) and cast to ``dtype`` for serving."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.to(dtype)
