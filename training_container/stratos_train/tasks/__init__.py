"""Tasks: data (loaded or reverse-synthesised), prompts, answer extraction, scoring and verification.

``get_task(name, **options)`` builds one; names are the contract's (``stratos_contract.tasks.TASKS``):

========================== ==================================================================
``mahjong-winning-tiles``  generator; options ``prompt_style`` (compact|full), ``trace``
                           (suits|waits|candidates|decompose), ``random_eval`` (bool)
``gsm8k``                  builtin dataset; options ``data_dir``, ``keep_annotations``
``jsonl``                  user files; options ``format``, ``train``, ``eval``, ``metric``, ``answer_regex``
========================== ==================================================================

Importing this package imports neither torch nor transformers (nor ``mahjong`` until a task needs it).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from stratos_train.tasks.base import (
    SPLITS,
    Answer,
    Example,
    Message,
    NoVerifierError,
    Score,
    Split,
    Task,
    TaskDataError,
    TaskError,
    UnknownTaskError,
    Verdict,
    example_record,
    pick_few_shot,
)

#: Task name -> "module:class" implementing it.
_REGISTRY: dict[str, str] = {
    "mahjong-winning-tiles": "stratos_train.tasks.mahjong:MahjongTask",
    "gsm8k": "stratos_train.tasks.gsm8k:Gsm8kTask",
    "jsonl": "stratos_train.tasks.jsonl:JsonlTask",
}
TASK_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_task(name: str, **options: Any) -> Task:
    """The task called ``name``, built with ``options`` (see the module docstring).

    Raises:
        UnknownTaskError: no such task (the message lists the known ones and the closest).
        TaskError: an option the task does not take, or a bad option value.
    """
    if name not in _REGISTRY:
        close = [t for t in TASK_NAMES if name and t.startswith(name)] or difflib.get_close_matches(
            name, TASK_NAMES, n=1
        )
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownTaskError(f"unknown task {name!r}{hint} (known: {', '.join(TASK_NAMES)})")
    module_name, class_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise TaskError(f"task {name!r}: {exc}") from exc
    try:
        task: Task = cls(**options)
    except ValueError as exc:
        raise TaskError(f"task {name!r}: {exc}") from exc
    return task


__all__ = [
    "SPLITS",
    "TASK_NAMES",
    "Answer",
    "Example",
    "Message",
    "NoVerifierError",
    "Score",
    "Split",
    "Task",
    "TaskDataError",
    "TaskError",
    "UnknownTaskError",
    "Verdict",
    "example_record",
    "get_task",
    "pick_few_shot",
]
