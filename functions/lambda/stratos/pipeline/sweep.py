"""The re-distillation sweep: find tasks that are due and start their runs, idempotently.

An EventBridge Scheduler schedule invokes the sweep with an explicit Input
(:class:`~stratos.events.RedistillSweepEvent`). For every task whose latest success carries a ``redistill``
policy, the sweep checks (:func:`due_reasons`):

* **age** — the last successful run finished ``max_age_days`` or more before the scheduled time;
* **prices** — an on-demand price the plan used (training or hosting) moved by more than
  ``price_change_fraction`` (live Pricing API, or the snapshot in ``snapshot`` mode);
* **new data** — ``on_new_data`` and a data file's S3 version (else ETag) differs from the one the run read.

A due task gets a :class:`~stratos.events.RunRequest` for the same spec version under the revision
``redistill-<scheduled time>``: the run id and execution name derive from it, so a retried or duplicated
sweep invocation for the same scheduled time re-finds the same execution instead of starting a second one
(and ValidateSpec's claim would stop it anyway). A task with a run still in progress is skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field

from stratos.errors import DataAccessDeniedError
from stratos.events import RunRequest, parse_sweep_event
from stratos.naming import SpecIdentity, run_names
from stratos.payloads import Payload
from stratos.pipeline.models import REDISTILL_REVISION_PREFIX
from stratos.pipeline.services import Services, get_services
from stratos.spec import RedistillPolicy
from stratos.types import Short

#: A run RUNNING for longer than this is considered stuck and no longer blocks re-distillation.
STUCK_AFTER = timedelta(days=31)
#: Entries kept in a report's lists.
REPORT_MAX = 200


class SweepEntry(Payload):
    """One task the sweep looked at."""

    task_id: Short
    due: bool
    reasons: list[str] = Field(default_factory=list, max_length=16)
    run_id: Short | None = None
    execution_name: Short | None = None
    started: bool = False
    skipped: str = Field(default="", max_length=256, description="Why the task was not run, if it was not.")


class SweepReport(Payload):
    """What one sweep did (the Lambda's return value, logged)."""

    MAX_BYTES: ClassVar[int] = 1024 * 1024

    scheduled_time: datetime
    dry_run: bool
    tasks: int = Field(ge=0, description="Tasks checked, count.")
    started: int = Field(ge=0, description="Runs started, count.")
    entries: list[SweepEntry] = Field(max_length=REPORT_MAX)


def due_reasons(
    policy: RedistillPolicy,
    last_finished: datetime,
    now: datetime,
    prices_then: dict[str, float | None],
    prices_now: dict[str, float | None],
    data_then: dict[str, str | None],
    data_now: dict[str, str | None],
) -> list[str]:
    """Why a task is due for re-distillation (empty: not due). Pure.

    Args:
        policy: the spec's redistill policy.
        last_finished: when the last successful run finished, UTC.
        now: the schedule's time, UTC.
        prices_then, prices_now: USD/hour by ``<instance type>/<Training|Hosting>`` (None = unknown, ignored).
        data_then, data_now: version (else ETag) by data URI (None = unknown, ignored).
    """
    reasons: list[str] = []
    if policy.max_age_days is not None:
        age = now - last_finished
        if age >= timedelta(days=policy.max_age_days):
            reasons.append(f"max_age_days: last successful run is {age.days} days old (limit {policy.max_age_days})")
    if policy.price_change_fraction is not None:
        for key, then in sorted(prices_then.items()):
            current = prices_now.get(key)
            if then is None or current is None or then <= 0:
                continue
            change = abs(current - then) / then
            if change > policy.price_change_fraction:
                reasons.append(
                    f"price_change_fraction: {key} moved {100 * change:.1f}% ({then:g} -> {current:g} USD/h; "
                    f"limit {100 * policy.price_change_fraction:g}%)"
                )
    if policy.on_new_data:
        for uri, then_version in sorted(data_then.items()):
            current_version = data_now.get(uri)
            if then_version is not None and current_version is not None and current_version != then_version:
                reasons.append(f"on_new_data: {uri} changed ({then_version} -> {current_version})")
    return reasons


def current_prices(svc: Services, region: str, keys: list[str]) -> dict[str, float | None]:
    """USD/hour now for ``<instance type>/<component>`` keys: the Pricing API in ``live`` mode, else the
    catalog snapshot (the API's own failures fall back to the snapshot too)."""
    from stratos.planner.catalog import Component, load_catalog
    from stratos.planner.pricing import PricingApi, PricingApiUnreachableError

    catalog = load_catalog()
    api = PricingApi() if svc.settings.price_source == "live" else None
    out: dict[str, float | None] = {}
    for key in keys:
        instance_type, _, component_name = key.rpartition("/")
        try:
            component = Component(component_name)
        except ValueError:
            out[key] = None
            continue
        usd = None
        if api is not None:
            try:
                usd = api.on_demand(region, instance_type, component).usd_per_hour
            except PricingApiUnreachableError:
                usd = None
        if usd is None:
            inst = catalog.instance(instance_type)
            usd = None if inst is None else inst.snapshot_prices.get((region, component))
        out[key] = None if usd is None else float(usd)
    return out


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def sweep(event: Any, services: Services | None = None) -> SweepReport:
    """Check every task, start the due ones' runs (at most ``max_runs``; none with ``dry_run``).

    Raises:
        EventShapeError: the schedule has no explicit Input, or another shape (naming the fields).
        ConfigurationError: ``STRATOS_STATE_MACHINE_ARN`` is not set (and a run is due).
    """
    svc = services or get_services()
    request = parse_sweep_event(event)
    now = request.scheduled_time
    revision = f"{REDISTILL_REVISION_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}"
    entries: list[SweepEntry] = []
    tasks = started = 0
    for task in svc.records.items_of_kind("task"):
        tasks += 1
        task_id = str(task.get("task_id"))
        last = task.get("last_success") or {}
        policy_doc = last.get("redistill")
        if not last or not policy_doc:
            entries.append(SweepEntry(task_id=task_id, due=False, skipped="no successful run with a redistill policy"))
            continue
        policy = RedistillPolicy.model_validate(policy_doc)
        finished = _parse_time(last.get("finished_at")) or now
        if task.get("last_run_status") == "RUNNING":
            since = _parse_time(task.get("last_run_started_at"))
            if since is not None and now - since < STUCK_AFTER:
                entries.append(
                    SweepEntry(task_id=task_id, due=False, skipped=f"run {task.get('last_run_id')} is in progress")
                )
                continue
        prices_then: dict[str, float | None] = dict(last.get("prices_used") or {})
        data_then: dict[str, str | None] = dict(last.get("data_versions") or {})
        prices_now = (
            current_prices(svc, svc.settings.region or "us-east-1", list(prices_then))
            if policy.price_change_fraction
            else {}
        )
        try:
            data_now = {uri: svc.artifacts.object_version(uri) for uri in data_then} if policy.on_new_data else {}
        except DataAccessDeniedError as exc:
            entries.append(SweepEntry(task_id=task_id, due=False, skipped=f"data unreadable: {exc}"[:256]))
            continue
        reasons = due_reasons(policy, finished, now, prices_then, prices_now, data_then, data_now)
        if not reasons:
            entries.append(SweepEntry(task_id=task_id, due=False))
            continue
        identity = (
            SpecIdentity.model_validate(last["spec"]).model_copy(update={"revision": None}).with_revision(revision)
        )
        names = run_names(identity, task_id)
        entry = SweepEntry(
            task_id=task_id, due=True, reasons=reasons[:16], run_id=names.run_id, execution_name=names.execution_name
        )
        if request.dry_run:
            entry = entry.model_copy(update={"skipped": "dry run"})
        elif started >= request.max_runs:
            entry = entry.model_copy(update={"skipped": f"max_runs {request.max_runs} reached"})
        else:
            payload = RunRequest(kind="stratos.run-request", spec=identity, reason="; ".join(reasons)[:256])
            _, fresh = svc.stepfunctions.start(names.execution_name, payload.model_dump_json())
            started += 1
            entry = entry.model_copy(update={"started": True, "skipped": "" if fresh else "already started"})
        entries.append(entry)
    return SweepReport(
        scheduled_time=now, dry_run=request.dry_run, tasks=tasks, started=started, entries=entries[:REPORT_MAX]
    )
