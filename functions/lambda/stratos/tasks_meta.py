"""Which task a spec selects. The task facts themselves (:class:`TaskMeta`, :data:`TASKS`) are part of the
contract both sides import (:mod:`stratos_contract.tasks`); they are re-exported here for the planner.
"""

from __future__ import annotations

from stratos.spec import BuiltinDatasetData, DataSection, GeneratorData
from stratos_contract.tasks import TASK_NAMES, TASKS, DataSource, TaskMeta, task_meta

__all__ = ["TASKS", "TASK_NAMES", "DataSource", "TaskMeta", "task_meta", "task_name"]


def task_name(data: DataSection) -> str:
    """The task a spec's ``data`` section selects: the generator or dataset name, or ``jsonl``."""
    if isinstance(data, GeneratorData):
        return data.generator
    if isinstance(data, BuiltinDatasetData):
        return data.name
    return "jsonl"
