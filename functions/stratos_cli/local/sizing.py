"""What a local run changed about its training job, in words (the ``stratos run`` summary and the report).

A local run applies ``overrides`` (hyperparameters sized for a CPU) on top of the job PrepareTrainingJob
asked for, and loads model channels from local sources (a depth-pruned student, say). Only what differs from
the job as it would run on AWS is described: the job's own hyperparameter where PrepareTrainingJob set one,
else the job's default (the contract's ``TrainingHyperparameters``, the one home of those defaults).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from stratos_contract.hyperparameters import TrainingHyperparameters, decode_hyperparameter

#: ``<source>@layers=<n>``: a depth-pruned copy (``stratos_train.models``).
_PRUNED_RE = re.compile(r"^(?P<base>.+)@layers=(?P<n>\d+)$")


def _flag(on: str, off: str) -> Callable[[Any], str]:
    return lambda value: on if value else off


#: Plain words for a hyperparameter's value; keys not listed read ``key value``.
WORDS: dict[str, Callable[[Any], str]] = {
    "teacher_rationales": _flag(
        "teacher rationales on",
        "teacher rationales off, so Knowledge Injection trained on the task's own verified reasoning only",
    ),
    "extra_eval_teacher": _flag(
        "the teacher is scored on the further held-out sets too",
        "the teacher is not scored on the further held-out sets",
    ),
    "evaluate_teacher": _flag("the teacher is scored", "the teacher is not scored"),
    "bf16": _flag("bf16", "fp32"),
    "lora": _flag("LoRA adapters", "all weights trained"),
    "per_device_batch_size": lambda v: f"batch {v}",
    "learning_rate": lambda v: f"learning rate {v:g}" if isinstance(v, float) else f"learning rate {v}",
    "max_seq_len": lambda v: f"sequences cut at {v} tokens",
    "max_new_tokens": lambda v: f"decoding budget {v} tokens",
    "eval_batch_size": lambda v: f"evaluation batch {v}",
    "logging_steps": lambda v: f"a metrics line every {v} steps",
    "probe_size": lambda v: f"mode probe on {v} examples",
    "max_steps": lambda v: f"{v} optimiser steps",
    "train_size": lambda v: f"{v} training examples",
    "eval_size": lambda v: f"{v} held-out examples",
    "parallelism": lambda v: "one process on this machine's CPU" if v is None else _plan_words(v),
}


def _plan_words(plan: Any) -> str:
    """A parallelism plan (the hyperparameter's decoded JSON object) in words: strategy, topology, batch shape."""
    if not isinstance(plan, Mapping):
        return str(plan)
    return (
        f"{plan.get('strategy')} on {plan.get('nodes')} x {plan.get('devices_per_node')} device(s), "
        f"micro-batch {plan.get('micro_batch')} x {plan.get('grad_accum')} accumulation"
    )


def _default(key: str) -> Any | None:
    """The training job's default for ``key`` (None: unknown key or a factory default)."""
    field = TrainingHyperparameters.model_fields.get(key)
    if field is None or field.default_factory is not None:
        return None
    return field.default


def _words(key: str, value: Any) -> str:
    words = WORDS.get(key)
    return words(value) if words else f"{key} {value}"


def describe_overrides(job: Mapping[str, str], overrides: Mapping[str, str]) -> list[str]:
    """The overrides that change the job, in words, each with what AWS would run.

    Args:
        job: the hyperparameters CreateTrainingJob carried (strings, before the overrides).
        overrides: the local hyperparameters applied on top (strings).

    Returns:
        One phrase per override whose value differs from the job's (or, where the job sets none, from the
        container's default), e.g. ``"decoding budget 320 tokens (AWS: 64)"``; flags read on their own
        (``"bf16"``, ``"teacher rationales off, so ..."``).
    """
    out: list[str] = []
    for key, raw in overrides.items():
        local = decode_hyperparameter(raw)
        aws = decode_hyperparameter(job[key]) if key in job else _default(key)
        if aws is not None and aws == local:
            continue
        text = _words(key, local)
        if aws is not None and not isinstance(local, bool):
            text += f" (AWS: {_plan_words(aws) if key == 'parallelism' else aws})"
        out.append(text)
    return out


def describe_sources(sources: Mapping[str, tuple[str, str]], job: Mapping[str, str] | None = None) -> list[str]:
    """Model channels loaded as something other than what the job loads on AWS, in words.

    Args:
        sources: channel -> (catalog id, the source the container loaded), e.g.
            ``{"student": ("smollm2-135m-instruct", "smollm2-135m-instruct@layers=15")}``.
        job: the job's hyperparameters: ``<channel>`` is what it loads on AWS (``channel:student``, or
            ``channel:student@layers=15`` for a catalog student that is itself a depth-pruned copy).
    """
    out: list[str] = []
    for channel, (model_id, source) in sources.items():
        base, _, local_cut = source.partition("@")
        aws_cut = (job or {}).get(channel, "").partition("@")[2]
        if local_cut == aws_cut and (base == model_id or aws_cut):
            continue  # the model AWS loads (cut alike), installed from PyPI instead of staged in S3
        pruned = _PRUNED_RE.match(source)
        if pruned and pruned["base"] == model_id:
            out.append(f"{channel} {model_id} depth-pruned to {pruned['n']} layers")
        else:
            out.append(f"{channel} {model_id} loaded as {source}")
    return out


#: Hyperparameters only one distillation mode reads: a change to them is not worth saying when the job ran the
#: other mode (teacher rationales feed Knowledge Injection's data only).
MODE_ONLY: dict[str, str] = {"teacher_rationales": "injection"}


def describe_local_job(
    job: Mapping[str, str],
    overrides: Mapping[str, str],
    sources: Mapping[str, tuple[str, str]],
    mode: str | None = None,
) -> list[str]:
    """Everything the local run changed about one training job: model sources first, then hyperparameters.

    ``mode`` is the mode the job ran (its metrics' ``mode``; None when unknown, e.g. the job failed early):
    overrides of hyperparameters only the other mode reads (:data:`MODE_ONLY`) are then left out.
    """
    relevant = {k: v for k, v in overrides.items() if mode is None or MODE_ONLY.get(k, mode) == mode}
    return describe_sources(sources, job) + describe_overrides(job, relevant)
