"""Step Functions SDK integrations: error names spelt with the service name Step Functions uses.

moto 5.2.5 names them with the lowercase service id (``sagemaker.ResourceLimitExceededException``); the ASL's
Catch says ``SageMaker.ResourceLimitExceededException``, as on AWS. This hook replaces the parser's
``state_task_service_aws_sdk._SERVICE_ERROR_NAMES``.
"""

from __future__ import annotations

from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch


class SdkErrorNames:
    """``SageMaker.ResourceLimitExceededException``, as Step Functions names it (moto: ``sagemaker.``)."""

    def patches(self) -> list[Patch]:
        """``_SERVICE_ERROR_NAMES`` with SageMaker, S3 and Lambda added."""
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_aws_sdk as sdk,
        )

        names = dict(sdk._SERVICE_ERROR_NAMES)
        names.update({"sagemaker": "SageMaker", "s3": "S3", "lambda": "Lambda"})
        return [patch.object(sdk, "_SERVICE_ERROR_NAMES", names)]
