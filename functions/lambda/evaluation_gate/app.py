"""EvaluationGate: read the training container's metrics.json and decide whether the student may deploy
(see :mod:`stratos.pipeline.gate`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.gate import evaluate

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = evaluate(event)
    metrics.add_metric(
        name="StudentAccuracy", unit=MetricUnit.Percent, value=100 * result.metrics.student_after_accuracy
    )
    metrics.add_metric(name="GateRejections", unit=MetricUnit.Count, value=0 if result.passed else 1)
    return result.to_state()
