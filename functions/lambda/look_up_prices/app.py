"""LookUpPrices: price every catalog instance type in the run's region and read the account's SageMaker instance
quotas there, store both in S3 (see :func:`stratos.pipeline.planning.look_up_prices`)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratos.pipeline.planning import look_up_prices

logger = Logger(service="stratos")
metrics = Metrics(namespace="Stratos", service="stratos")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = look_up_prices(event)
    metrics.add_metric(name="UnknownPrices", unit=MetricUnit.Count, value=ref.unknown_prices)
    metrics.add_metric(name="QuotasUnreadable", unit=MetricUnit.Count, value=int(ref.quotas == "unreadable"))
    metrics.add_metric(name="ZeroQuotaInstanceTypes", unit=MetricUnit.Count, value=ref.zero_quota_types)
    return ref.to_state()
