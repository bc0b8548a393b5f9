"""Saving the deployable student: everything at the ROOT of the model directory.

SageMaker packs ``/opt/ml/model`` into ``model.tar.gz``; the Hugging Face inference containers (and our
local server) expect ``config.json``, the weights and the tokenizer files at the archive ROOT. A model in a
subfolder, or without its tokenizer, still deploys "InService" and then fails every request — so
:func:`save_deployable` writes them at the root and :func:`check_model_dir` refuses anything else.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, PreTrainedTokenizerBase

from stratos_train.data import stop_token_ids

REQUIRED_FILES = ("config.json", "generation_config.json", "tokenizer_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ExportError(RuntimeError):
    """The model directory is not deployable (the message lists what is missing)."""


def save_deployable(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: Path,
    *,
    max_new_tokens: int,
    card: dict[str, Any],
) -> list[str]:
    """Write model, tokenizer, generation config and model card at the root of ``model_dir``.

    ``generation_config.json`` lists EVERY stop token id (``eos_token_id`` as a list) so servers stop at the
    chat end marker as well as EOS, and decodes greedily by default.

    Returns:
        The file names written (sorted).

    Raises:
        ExportError: if the result fails :func:`check_model_dir`.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    stops = stop_token_ids(tokenizer)
    model.config.eos_token_id = stops[0] if len(stops) == 1 else stops
    model.generation_config = GenerationConfig(
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
        max_new_tokens=max_new_tokens,
    )
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / "README.md").write_text(render_model_card(card), encoding="utf-8")
    check_model_dir(model_dir)
    return sorted(p.name for p in model_dir.iterdir())


def check_model_dir(model_dir: Path) -> None:
    """Raise :class:`ExportError` unless config, weights, tokenizer and generation config sit at the root."""
    names = {p.name for p in model_dir.iterdir()} if model_dir.is_dir() else set()
    missing = [f for f in REQUIRED_FILES if f not in names]
    if not any(f in names for f in WEIGHT_FILES):
        missing.append("model.safetensors")
    if not any(f in names for f in TOKENIZER_FILES):
        missing.append("tokenizer.json")
    if missing:
        raise ExportError(f"model directory {model_dir} lacks {missing} at its root")
    gen = json.loads((model_dir / "generation_config.json").read_text())
    if not gen.get("eos_token_id"):
        raise ExportError("generation_config.json has no eos_token_id")


def package_model(model_dir: Path, archive: Path) -> list[str]:
    """Pack ``model_dir`` as SageMaker does: ``model.tar.gz`` with the files at the archive root.

    Returns:
        The archive member names (no leading folder).
    """
    check_model_dir(model_dir)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(model_dir)))
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getnames()


def render_model_card(card: dict[str, Any]) -> str:
    """A Markdown model card from the run's facts (base models, mode and why, data, metrics, limits).

    ``teacher`` / ``student`` name the models (catalog ids when the job was given them); ``*_source``, when it
    differs, says how each was loaded (e.g. ``channel:student@layers=15``: the base's weights, depth-pruned).
    """
    metrics = card.get("metrics", {})
    sources = [
        f"{role} `{card[role]}` loaded from `{card[f'{role}_source']}`"
        for role in ("teacher", "student")
        if card.get(f"{role}_source") not in (None, card.get(role))
    ]
    loaded = f"\n* Loaded: {'; '.join(sources)}" if sources else ""
    examples = (
        f"Training examples: {card.get('train_examples', '?')}; "
        f"held-out evaluation examples: {card.get('eval_examples', '?')}"
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(metrics.items()) if not isinstance(v, dict | list))
    return f"""---
library_name: transformers
pipeline_tag: text-generation
base_model: {card.get("student", "unknown")}
tags: [stratos, distillation, {card.get("mode", "unknown")}]
---

# {card.get("title", "Stratos distilled student")}

Distilled by Stratos from teacher `{card.get("teacher", "unknown")}` into student `{card.get("student", "unknown")}`.

* Task: `{card.get("task", "unknown")}`
* Mode: **{card.get("mode", "unknown")}** — {card.get("mode_reason", "")}
* {examples}{loaded}

## Evaluation (held-out set, greedy decoding)

| metric | value |
|---|---|
{rows}

## Intended use and limits

Answers the task above in the format it was trained on. It was trained on {card.get("data_note", "task data")};
expect it to fail outside that task. Licences of the base models apply to this derivative.
"""


def export_source(source: str, model_dir: Path, *, max_new_tokens: int = 512) -> list[str]:
    """Write the model a source names (:mod:`stratos_train.models`: a PyPI model, ``tiny:<seed>``, a directory,
    ``<source>@layers=<n>``) as a deployable folder in bf16, for an endpoint to serve it as it stands (no
    training). The local pipeline uses it to stand up a teacher endpoint (``stratos run`` with a
    ``sagemaker-endpoint`` external teacher).

    Returns:
        The file names written (sorted).

    Raises:
        ModelLoadError: the source cannot be loaded.
        ExportError: the result is not deployable.
    """
    import torch

    from stratos_train.models import load_model

    loaded = load_model(source, dtype=torch.bfloat16)
    card = {"title": f"{source} as published", "teacher": source, "student": source, "mode": "none"}
    return save_deployable(loaded.model, loaded.tokenizer, model_dir, max_new_tokens=max_new_tokens, card=card)


def main(argv: list[str] | None = None) -> int:
    """``python -m stratos_train.export SOURCE MODEL_DIR [--max-new-tokens N]``: :func:`export_source`; prints the
    files written, one per line. Exit 2 with the reason on stderr when the source cannot be exported."""
    import argparse
    import sys

    from stratos_train.models import ModelLoadError

    parser = argparse.ArgumentParser(prog="python -m stratos_train.export", description=main.__doc__)
    parser.add_argument("source", help="model source (smollm2-135m-instruct, gemma-3-270m, tiny:1, dir:<path>, ...)")
    parser.add_argument("model_dir", type=Path, help="folder to write the deployable model into")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="generation_config.json's budget, tokens")
    args = parser.parse_args(argv)
    try:
        names = export_source(args.source, args.model_dir, max_new_tokens=args.max_new_tokens)
    except (ModelLoadError, ExportError) as exc:
        print(f"cannot export {args.source!r}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
