"""Service quotas in the plan: training and serving options the account's quotas cannot hold are rejected.

A training option needs ``nodes`` instances of its type at once (its parallelism plan's ``nodes``; 1 without a
plan), drawn on the ``<type> for training job usage`` quota, or on ``<type> for spot training job usage`` when it
runs on managed spot; a serving option needs ``deployment.instance_count`` instances on ``<type> for endpoint
usage`` (:mod:`stratos.aws.quotas`). An option whose quota is known and below that count is rejected under the
reason naming the quota (:data:`TRAINING_QUOTA`, :data:`SPOT_TRAINING_QUOTA`, :data:`SERVING_QUOTA`), counted in
the selection's ``rejected`` like every other reason; an option already rejected for another reason keeps it.
Under ``constraints.spot: auto`` a spot option whose spot quota is too small but whose on-demand quota holds
becomes the same job on-demand (its :class:`~stratos.planner.estimators.SpotEstimate` already carries those
figures); under ``on`` it is rejected.

A quota that is not listed limits nothing, and an ``unreadable`` table changes nothing (the instance allow-lists,
applied by :func:`stratos.planner.plan.limits_for`, are then all that restricts the types). Each exclusion is
reported in the plan's warnings with the quota's name and value.
"""

from __future__ import annotations

import math
from dataclasses import replace

from stratos.aws.quotas import InstanceQuotas, Usage
from stratos.planner.estimators import SpotEstimate
from stratos.planner.selection import PlanningProblem, ServeOption, TrainOption
from stratos.spec import TaskSpec

#: Rejection reasons (keys of ``Selection.rejected``), each named after the SageMaker quota that refused.
TRAINING_QUOTA = "training-job-usage-quota"
SPOT_TRAINING_QUOTA = "spot-training-job-usage-quota"
SERVING_QUOTA = "endpoint-usage-quota"
#: The quota name's usage words, for messages (``<type> for <words> usage``).
QUOTA_WORDS: dict[Usage, str] = {
    "training": "training job",
    "spot-training": "spot training job",
    "endpoint": "endpoint",
}
#: Instance types a warning names before it summarises the rest as a count.
WARNING_TYPES = 8


def apply_quotas(
    problem: PlanningProblem, quotas: InstanceQuotas, spec: TaskSpec, warnings: list[str]
) -> PlanningProblem:
    """``problem`` with every training and serving option the account's quotas cannot hold rejected (module
    docstring); ``problem`` itself is not changed.

    Args:
        problem: the factor tables (:func:`stratos.planner.plan.build_problem`).
        quotas: the account's quotas in the spec's region.
        spec: the spec (``deployment.instance_count``, ``constraints.spot``).
        warnings: the plan's warnings; one line per usage that excluded types is appended (and one when the
            quotas were unreadable).

    Returns:
        The new tables (same instance universe and pair modes).
    """
    if quotas.source != "live":
        warnings.append(
            f"service quotas unreadable in {quotas.region} ({quotas.note or 'no detail'}): only the instance "
            "allow-lists restrict instance types"
        )
        return problem
    types = problem.instance_types
    count = spec.deployment.instance_count
    excluded: dict[Usage, dict[str, tuple[int, int]]] = {"training": {}, "spot-training": {}, "endpoint": {}}
    on_demand_instead: dict[str, int] = {}

    def short(usage: Usage, instance_type: str, needed: int) -> int | None:
        """The quota when it is known and below ``needed``, else None."""
        limit = quotas.max_instances(usage, instance_type)
        return limit if limit is not None and limit < needed else None

    serving: list[list[ServeOption]] = []
    for options in problem.serving:
        row: list[ServeOption] = []
        for p50, cost, rate, idx, reason in options:
            limit = None if reason is not None else short("endpoint", types[idx], count)
            if limit is None:
                row.append((p50, cost, rate, idx, reason))
                continue
            _note(excluded["endpoint"], types[idx], limit, count)
            row.append((math.inf, math.inf, rate, idx, SERVING_QUOTA))
        serving.append(row)

    training: list[list[TrainOption]] = []
    spot_table: list[list[SpotEstimate | None]] = []
    for k, options in enumerate(problem.training):
        layouts = problem.parallelism[k] if problem.parallelism else []
        spots: list[SpotEstimate | None] = list(problem.spot[k]) if problem.spot else [None] * len(options)
        row_t: list[TrainOption] = []
        for i, (hours, cost, rate, idx, reason) in enumerate(options):
            layout = layouts[i] if i < len(layouts) else None
            nodes = layout.nodes if layout is not None else 1
            spot = spots[i] if i < len(spots) else None
            name = types[idx]
            if reason is not None:
                row_t.append((hours, cost, rate, idx, reason))
                continue
            if spot is not None:
                limit = short("spot-training", name, nodes)
                if limit is None:
                    row_t.append((hours, cost, rate, idx, None))
                    continue
                if spec.constraints.spot == "on" or short("training", name, nodes) is not None:
                    _note(excluded["spot-training"], name, limit, nodes)
                    row_t.append((math.inf, math.inf, rate, idx, SPOT_TRAINING_QUOTA))
                    continue
                # auto: the same job on-demand, on its own quota (which holds it).
                on_demand_instead[name] = limit
                spots[i] = None
                row_t.append((spot.on_demand_hours, spot.on_demand_cost_usd, spot.on_demand_usd_per_hour, idx, None))
                continue
            limit = short("training", name, nodes)
            if limit is None:
                row_t.append((hours, cost, rate, idx, None))
                continue
            _note(excluded["training"], name, limit, nodes)
            row_t.append((math.inf, math.inf, rate, idx, TRAINING_QUOTA))
        training.append(row_t)
        spot_table.append(spots)

    for usage, found in excluded.items():
        if found:
            warnings.append(_excluded_line(quotas.region, usage, found))
    if on_demand_instead:
        names = sorted(on_demand_instead)
        warnings.append(
            f"service quotas ({quotas.region}): train on-demand instead of managed spot on "
            f"{_names(names)}: their 'for spot training job usage' quota is below the job's nodes"
        )
    return replace(problem, training=training, serving=serving, spot=spot_table if problem.spot else problem.spot)


def _note(found: dict[str, tuple[int, int]], instance_type: str, limit: int, needed: int) -> None:
    """Record an exclusion, keeping the fewest instances any excluded option of the type needed."""
    previous = found.get(instance_type)
    found[instance_type] = (limit, needed if previous is None else min(previous[1], needed))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:WARNING_TYPES])
    return shown if len(names) <= WARNING_TYPES else f"{shown} and {len(names) - WARNING_TYPES} more"


def _excluded_line(region: str, usage: Usage, found: dict[str, tuple[int, int]]) -> str:
    """``service quotas (region): excluded for <usage> ...: '<type> for <words> usage' = 0 < 1; ...``, each with the
    fewest instances an excluded option of the type needed."""
    words = QUOTA_WORDS[usage]
    parts = [f"'{t} for {words} usage' = {limit} < {needed}" for t, (limit, needed) in sorted(found.items())]
    shown = "; ".join(parts[:WARNING_TYPES])
    if len(parts) > WARNING_TYPES:
        shown += f"; and {len(parts) - WARNING_TYPES} more"
    what = "serving" if usage == "endpoint" else ("managed spot training" if usage == "spot-training" else "training")
    return f"service quotas ({region}): excluded for {what} (quota < instances the plan needs): {shown}"
