"""Step Functions adapter: start a run by name, idempotently."""

from __future__ import annotations

from typing import Any

from stratos.aws.clients import client, error_code, throttling_as_retryable


class StepFunctions:
    """Starts executions of the distillation state machine.

    Args:
        state_machine_arn: the state machine.
        sfn_client: a boto3 Step Functions client; the shared lazy one when omitted.
    """

    def __init__(self, state_machine_arn: str, sfn_client: Any = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = sfn_client

    @property
    def sfn(self) -> Any:
        """The boto3 Step Functions client."""
        if self._client is None:
            self._client = client("stepfunctions")
        return self._client

    def start(self, name: str, payload: str) -> tuple[str, bool]:
        """StartExecution named ``name``; returns ``(execution ARN, started now)``.

        Step Functions treats a repeated name with the same input as the same execution (idempotent for 90
        days), and refuses a repeated name with another input (``ExecutionAlreadyExists``): both mean the
        run was started before, so neither starts a second one.
        """
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"states:StartExecution {name}"):
                response = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=payload)
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            return arn, False
        return str(response["executionArn"]), True
