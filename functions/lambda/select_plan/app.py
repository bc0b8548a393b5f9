"""SelectPlan and FallBackToNextPlan: the planner's choice, and the next frontier plan after a quota refusal
(see :mod:`stratos.pipeline.planning`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.planning import fall_back, select_plan

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = select_plan(event)
    metrics.add_metric(name="PlanCandidates", unit=MetricUnit.Count, value=ref.candidates)
    return ref.to_state()


@logger.inject_lambda_context
@metrics.log_metrics
def fallback_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    document = fall_back(event)
    metrics.add_metric(name="QuotaFallbacks", unit=MetricUnit.Count, value=1)
    return document.to_state()
