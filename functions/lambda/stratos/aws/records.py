"""DynamoDB adapter for run records and task records (one table, see template.yaml ``RunsTable``).

Items:

* **run** — ``pk = <run_id>``, ``kind = "run"``: status (``RUNNING`` / ``SUCCEEDED`` / ``FAILED``), stage,
  spec identity, plan, estimated vs actual training time and cost, mode decision and evidence, metrics,
  endpoint, error. Owned by exactly one Step Functions execution (``execution_arn``): the claim is a
  conditional put, every later write is conditional on the owner, so a duplicate event's execution can
  neither start a second run nor overwrite the first one's record.
* **task** — ``pk = task#<task_id>``, ``kind = "task"``: the task's latest run and latest success (spec
  version, prices and data versions used, accuracy, redistill policy): what the re-distillation sweep reads.

The ``by-kind`` index (``kind``, ``updated_at``) lists tasks (and runs) without a scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from stratos.aws.clients import client, error_code, throttling_as_retryable
from stratos.errors import DuplicateRunError
from stratos.run_record import RunRecord

KIND_INDEX = "by-kind"
TASK_PREFIX = "task#"


def to_dynamo(value: Any) -> Any:
    """A JSON-safe value with floats as :class:`~decimal.Decimal` (DynamoDB rejects binary floats)."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """The reverse of :func:`to_dynamo`: Decimals back to int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


class RunRecords:
    """Run and task records in one DynamoDB table.

    Args:
        table_name: the table.
        dynamodb_client: a boto3 DynamoDB client; the shared lazy one when omitted.
    """

    def __init__(self, table_name: str, dynamodb_client: Any = None) -> None:
        self.table_name = table_name
        self._client = dynamodb_client

    @property
    def ddb(self) -> Any:
        """The boto3 DynamoDB client."""
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    @staticmethod
    def _item(fields: Mapping[str, Any]) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        return {k: serializer.serialize(v) for k, v in to_dynamo(dict(fields)).items() if v is not None}

    @staticmethod
    def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        out: dict[str, Any] = from_dynamo({k: deserializer.deserialize(v) for k, v in item.items()})
        return out

    def claim(self, run_id: str, execution_arn: str, record: RunRecord) -> None:
        """Create the run's record owned by ``execution_arn`` (or re-claim it for the same execution), with the
        fields ``record`` sets.

        Raises:
            DuplicateRunError: another execution owns the run (naming it and the run's status).
            ThrottlingError: DynamoDB throttled the write.
        """
        from botocore.exceptions import ClientError

        item = self._item(
            {**record.fields(), "pk": run_id, "kind": "run", "run_id": run_id, "execution_arn": execution_arn}
        )
        try:
            with throttling_as_retryable(f"dynamodb:PutItem {run_id}"):
                self.ddb.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk) OR execution_arn = :me",
                    ExpressionAttributeValues={":me": {"S": execution_arn}},
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            owner = self.get(run_id) or {}
            raise DuplicateRunError(
                f"run {run_id} already belongs to execution {owner.get('execution_arn', '?')} "
                f"(status {owner.get('status', '?')}, stage {owner.get('stage', '?')}): this event is a duplicate"
            ) from exc

    def update(self, run_id: str, execution_arn: str, record: RunRecord) -> None:
        """Set the fields ``record`` sets on the run's record, only if ``execution_arn`` owns it.

        Raises:
            DuplicateRunError: the record is missing or owned by another execution.
            ThrottlingError: DynamoDB throttled the write.
        """
        from botocore.exceptions import ClientError

        values = self._item(record.fields())
        if not values:
            return
        names = {f"#f{i}": name for i, name in enumerate(values)}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
        attr_values = {f":v{i}": value for i, value in enumerate(values.values())}
        attr_values[":me"] = {"S": execution_arn}
        try:
            with throttling_as_retryable(f"dynamodb:UpdateItem {run_id}"):
                self.ddb.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": run_id}},
                    UpdateExpression=f"SET {sets}",
                    ConditionExpression="execution_arn = :me",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=attr_values,
                )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise DuplicateRunError(f"run {run_id} is not owned by {execution_arn}; record left unchanged") from exc

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run's record (strongly consistent read), or ``None``."""
        with throttling_as_retryable(f"dynamodb:GetItem {run_id}"):
            response = self.ddb.get_item(TableName=self.table_name, Key={"pk": {"S": run_id}}, ConsistentRead=True)
        item = response.get("Item")
        return self._plain(item) if item else None

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        """The task's record, or ``None``."""
        return self.get(f"{TASK_PREFIX}{task_id}")

    def put_task(self, task_id: str, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the task's record (created when absent)."""
        values = self._item({**fields, "kind": "task", "task_id": task_id})
        names = {f"#f{i}": name for i, name in enumerate(values)}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
        attr_values = {f":v{i}": value for i, value in enumerate(values.values())}
        with throttling_as_retryable(f"dynamodb:UpdateItem task {task_id}"):
            self.ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"{TASK_PREFIX}{task_id}"}},
                UpdateExpression=f"SET {sets}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attr_values,
            )

    def items_of_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        """Every item of ``kind`` (``task`` or ``run``), newest ``updated_at`` first, page by page."""
        paginator = self.ddb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            IndexName=KIND_INDEX,
            KeyConditionExpression="#k = :kind",
            ExpressionAttributeNames={"#k": "kind"},
            ExpressionAttributeValues={":kind": {"S": kind}},
            ScanIndexForward=False,
        )
        with throttling_as_retryable(f"dynamodb:Query {KIND_INDEX}"):
            for page in pages:
                for item in page.get("Items", []):
                    yield self._plain(item)
