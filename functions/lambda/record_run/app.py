"""RecordSuccess and RecordFailure: close the run record and summarise the run for the EventBridge event;
RecordAbandoned: close the record of an execution that timed out or was aborted (see
:mod:`stratos.pipeline.record`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.record import record_abandoned, record_failure, record_success

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def success_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = record_success(event)
    metrics.add_metric(name="RunsSucceeded", unit=MetricUnit.Count, value=1)
    return summary.to_state()


@logger.inject_lambda_context
@metrics.log_metrics
def failure_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = record_failure(event)
    metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    logger.warning("run failed", run_id=summary.run_id, error=summary.error, reason=summary.reason)
    return summary.to_state()


@logger.inject_lambda_context
@metrics.log_metrics
def abandoned_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = record_abandoned(event)
    metrics.add_metric(name="RunsAbandoned", unit=MetricUnit.Count, value=1 if result.closed else 0)
    return result.to_state()
