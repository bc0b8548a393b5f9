"""PrepareTrainingJob: the CreateTrainingJob request for the chosen plan (see
:mod:`stratos.pipeline.training`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.training import prepare_training

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = prepare_training(event)
    metrics.add_metric(name="TrainingVolumeGB", unit=MetricUnit.Count, value=request.volume_size_gb)
    return request.to_state()
