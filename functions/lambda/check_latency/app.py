"""CheckLatency: load-test the endpoint once it is InService on this run's config (:mod:`stratos.pipeline.latency`);
RollBackDeployment: put the endpoint back as it was when it missed its latency limit
(:func:`stratos.pipeline.deploy.roll_back`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.deploy import roll_back
from stratos.pipeline.latency import check_latency

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    check = check_latency(event)
    measured = check.measured
    if measured.p50_ms is not None:
        metrics.add_metric(name="MeasuredP50LatencyMs", unit=MetricUnit.Milliseconds, value=measured.p50_ms)
    metrics.add_metric(
        name="LatencyChecksFailed" if not check.passed else "LatencyChecksPassed", unit=MetricUnit.Count, value=1
    )
    logger.info("latency check", endpoint=check.endpoint_name, passed=check.passed, reason=check.reason)
    return check.to_state()


@logger.inject_lambda_context
@metrics.log_metrics
def rollback_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rollback = roll_back(event)
    metrics.add_metric(name=f"Endpoints{rollback.action.capitalize()}AfterLatency", unit=MetricUnit.Count, value=1)
    logger.warning("deployment rolled back", endpoint=rollback.endpoint_name, reason=rollback.reason)
    return rollback.to_state()
