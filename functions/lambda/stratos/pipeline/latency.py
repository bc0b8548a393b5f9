"""CheckLatency: once the endpoint is InService on this run's config, measure it at the spec's latency shape.

A bounded closed-loop load test (:mod:`stratos.loadtest`: two one-token probes that size the prompt and one
warm-up request, all excluded; then at most 4 requests per client and at least 16, issued for at most
``timing.latency_check_seconds``) is sent through ``sagemaker-runtime``
InvokeEndpoint at ``latency.concurrency`` x ``deployment.instance_count`` clients, with prompts of
``latency.prompt_tokens`` and ``max_new_tokens`` = ``latency.output_tokens``. The verdict
(:func:`stratos.loadtest.verdict`): every request answered and measured p50 <= ``latency.p50_ms`` x (1 +
:data:`~stratos.loadtest.LATENCY_TOLERANCE`). Either way the figures, beside the plan's predicted p50 and
throughput, go into the run record (``latency``) and the state (``$.latency``); the state machine then
finishes the deployment (pass) or rolls it back (:func:`stratos.pipeline.deploy.roll_back`) and fails the run
with the figures (fail). With the template's ``LatencyCheckAction`` at ``report`` (``timing.latency_check_action``;
what ``stratos run`` uses on this machine, whose CPU is not the serving instance the spec's limit was set for) a
miss is recorded with the same figures and the deployment stays (``keep``).

The planner's prediction is its roofline p50 (``PlanSummary.p50_latency_ms``) and the throughput it implies
at the measured concurrency (:func:`stratos.planner.estimators.throughput_tokens_per_s`: concurrency x
output tokens / p50).
"""

from __future__ import annotations

from typing import Any

from stratos.loadtest import (
    LATENCY_TOLERANCE,
    LoadShape,
    LoadTestResult,
    SageMakerRuntimeTransport,
    Transport,
    latency_limit_ms,
    run_load_test,
    verdict,
)
from stratos.pipeline.models import EndpointState, LatencyCheck, LatencyCheckAction
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import load_spec, parse_step_event, utcnow
from stratos.run_record import RunRecord


def _relative_error(measured: float | None, predicted: float) -> float | None:
    """``measured / predicted - 1`` (``None`` when either is unknown or the prediction is 0)."""
    if measured is None or predicted <= 0:
        return None
    return measured / predicted - 1.0


def latency_check(
    measured: LoadTestResult,
    *,
    endpoint_name: str,
    endpoint_config_name: str,
    instance_count: int = 1,
    spec_p50_ms: float,
    predicted_p50_ms: float,
    output_tokens: int,
    tolerance: float = LATENCY_TOLERANCE,
    action: LatencyCheckAction = "roll-back",
) -> LatencyCheck:
    """The :class:`~stratos.pipeline.models.LatencyCheck` of a measurement: verdict, limit, prediction, errors, and
    whether the deployment stays (``keep``: passed, or ``action`` ``report``)."""
    from stratos.planner.estimators import throughput_tokens_per_s

    passed, reason = verdict(measured, spec_p50_ms, tolerance)
    predicted_rate = (
        throughput_tokens_per_s(predicted_p50_ms, output_tokens, measured.concurrency) if predicted_p50_ms > 0 else 0.0
    )
    return LatencyCheck(
        endpoint_name=endpoint_name,
        endpoint_config_name=endpoint_config_name,
        instance_count=instance_count,
        passed=passed,
        action=action,
        keep=passed or action == "report",
        reason=(
            f"endpoint {endpoint_name}: {reason}"
            + ("" if passed or action != "report" else " (reported only: LatencyCheckAction is report)")
        )[:1024],
        spec_p50_ms=spec_p50_ms,
        tolerance=tolerance,
        limit_ms=latency_limit_ms(spec_p50_ms, tolerance),
        predicted_p50_ms=predicted_p50_ms,
        predicted_tokens_per_s=predicted_rate,
        p50_error=_relative_error(measured.p50_ms, predicted_p50_ms),
        tokens_per_s_error=_relative_error(measured.tokens_per_s, predicted_rate),
        measured=measured,
    )


def check_latency(event: Any, services: Services | None = None, transport: Transport | None = None) -> LatencyCheck:
    """Load-test the endpoint this run just deployed and judge it against ``constraints.latency``.

    Args:
        event: the step event (the endpoint InService on this run's config).
        services: the adapters (default: the process's).
        transport: how requests reach the endpoint (default: ``sagemaker-runtime`` InvokeEndpoint in the run's
            region, :class:`~stratos.loadtest.SageMakerRuntimeTransport`).

    Returns:
        The check; ``passed`` False is not an error here (the state machine rolls back and fails the run).

    Raises:
        EventShapeError: the step input lacks the deployment or the endpoint poll.
    """
    svc = services or get_services()
    step = parse_step_event(event, EndpointState)
    doc = step.state
    run, ref, plan = doc.run, doc.deployment, doc.plan
    spec = load_spec(svc, run)
    shape = LoadShape.from_spec(spec, max_seconds=float(doc.timing.latency_check_seconds))
    sender = transport or SageMakerRuntimeTransport(ref.endpoint_name, region=run.region, pool=shape.concurrency)
    measured = run_load_test(sender, shape)
    check = latency_check(
        measured,
        endpoint_name=ref.endpoint_name,
        endpoint_config_name=ref.endpoint_config_name,
        instance_count=spec.deployment.instance_count,
        spec_p50_ms=spec.constraints.latency.p50_ms,
        predicted_p50_ms=plan.plan.p50_latency_ms,
        output_tokens=shape.output_tokens,
        action=doc.timing.latency_check_action,
    )
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(latency=check.model_dump(mode="json"), updated_at=utcnow()),
    )
    return check
