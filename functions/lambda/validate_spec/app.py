"""ValidateSpec: claim the run for this spec version, validate the spec, copy it under runs/ (see
:mod:`stratos.pipeline.validate`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.validate import start_run

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = start_run(event)
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
    logger.info("run started", run_id=started.run.names.run_id, task_id=started.run.task_id)
    return started.to_state()
