"""Deploy and FinishDeployment: blue/green the student onto the task's endpoint, then delete the old config
once the endpoint is InService again (see :mod:`stratos.pipeline.deploy`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.deploy import deploy, finish

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = deploy(event)
    metrics.add_metric(name=f"Endpoints{ref.action.capitalize()}", unit=MetricUnit.Count, value=1)
    return ref.to_state()


@logger.inject_lambda_context
@metrics.log_metrics
def finish_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = finish(event)
    metrics.add_metric(name="DeploymentsFinished", unit=MetricUnit.Count, value=1)
    return ref.to_state()
