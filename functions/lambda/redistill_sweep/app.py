"""Re-distillation sweep: invoked by the EventBridge Scheduler schedule; starts the due tasks' runs (see
:mod:`stratos.pipeline.sweep`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.sweep import sweep

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = sweep(event)
    metrics.add_metric(name="RedistillRunsStarted", unit=MetricUnit.Count, value=report.started)
    return report.model_dump(mode="json")
