"""The Stratos stack built from ``template.yaml`` inside moto, with the real handlers and state machine.

Usage::

    runner = ProcessTrainingRunner(work_dir, s3=lambda: stack.client("s3"))
    with EmbeddedStack(runner=runner, parameters={"TrainingPollSeconds": "0", "EndpointPollSeconds": "0"}) as stack:
        stack.upload_spec(Path("events/specs/mahjong-winning-tiles.json").read_bytes())
        [arn] = stack.wait_for_executions(1)
        stack.wait(arn)

Every resource the pipeline touches (buckets with their versioning and EventBridge notifications, the table
and its index, roles, functions with the template's handlers and environment, the state machine with its
DefinitionSubstitutions, the EventBridge rule's pattern, the re-distillation schedule and its Input) comes
from the template through :mod:`stratos_cli.local.template`; nothing is typed twice. Resource types the embedded
AWS has no use for (log groups, bucket policies, the dead-letter queue and its alarm, the KMS managed policy) are
named, so that what refers to them resolves, and listed in :attr:`EmbeddedStack.skipped`.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from stratos_cli.local.moto_hooks import Hooks, SageMakerAccount, installed
from stratos_cli.local.template import Resolver, load_template, parameter_values, substitute_definition
from stratos_cli.local.training import TrainingRunner

#: The repository's template (functions/stratos_cli/local -> repository root).
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
ACCOUNT = "123456789012"
#: S3's own region: the only one where CreateBucket takes no LocationConstraint.
S3_DEFAULT_REGION = "us-east-1"


def local_parameters(region: str) -> dict[str, str]:
    """Values for the parameters that have no default in the template: the images, in the ECR registry of the
    stack's region (SageMaker pulls a job's or endpoint's image from its own region)."""
    registry = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"
    return {
        "TrainingImageUri": f"{registry}/stratos-train:local",
        "InferenceImageUri": f"{registry}/stratos-serve-gpu:local",
        "CpuInferenceImageUri": f"{registry}/stratos-serve-cpu:local",
    }


_MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


class StackError(RuntimeError):
    """The embedded stack could not be built, or an execution did not finish in time."""


def _physical(stack: str, logical: str) -> str:
    return f"{stack}-{logical}"


class StackLayout:
    """The stack on paper: the template, its parameter values and every resource's physical name and ARN
    (:meth:`_names`), with the resolver of the template's intrinsics over them. Creates nothing.

    Args:
        parameters: template parameter overrides (strings).
        template: the template file.
        region: the region everything lives in.
        stack_name: prefix of every physical name.
    """

    def __init__(
        self,
        parameters: Mapping[str, str] | None = None,
        template: str | Path = DEFAULT_TEMPLATE,
        region: str = "us-east-1",
        stack_name: str = "stratos",
    ) -> None:
        self.template_path = Path(template)
        self.template = load_template(self.template_path)
        self.region = region
        self.parameters = parameter_values(self.template, {**local_parameters(region), **(parameters or {})})
        self.stack_name = stack_name
        self.resources: dict[str, str] = {}
        self.attributes: dict[str, str] = {}

    def _names(self) -> None:
        r, a = self.region, ACCOUNT
        for logical, resource in self.template["Resources"].items():
            kind = resource["Type"]
            name = _physical(self.stack_name, logical)
            props = resource.get("Properties") or {}
            if kind == "AWS::S3::Bucket":
                name = name.lower()[:63]
                self.resources[logical] = name
                self.attributes[f"{logical}.Arn"] = f"arn:aws:s3:::{name}"
            elif kind == "AWS::DynamoDB::Table":
                self.resources[logical] = name
                self.attributes[f"{logical}.Arn"] = f"arn:aws:dynamodb:{r}:{a}:table/{name}"
            elif kind == "AWS::IAM::Role":
                self.resources[logical] = name
                self.attributes[f"{logical}.Arn"] = f"arn:aws:iam::{a}:role/{name}"
            elif kind == "AWS::Serverless::Function":
                self.resources[logical] = name
                self.attributes[f"{logical}.Arn"] = f"arn:aws:lambda:{r}:{a}:function:{name}"
            elif kind == "AWS::Serverless::StateMachine":
                arn = f"arn:aws:states:{r}:{a}:stateMachine:{name}"
                self.resources[logical] = arn
                self.attributes[f"{logical}.Arn"] = arn
                self.attributes[f"{logical}.Name"] = name
            elif kind == "AWS::Logs::LogGroup":
                group = props.get("LogGroupName")
                self.resources[logical] = name if not isinstance(group, str) else group
                self.attributes[f"{logical}.Arn"] = f"arn:aws:logs:{r}:{a}:log-group:{name}:*"
            elif kind == "AWS::Scheduler::Schedule":
                self.resources[logical] = name
                self.attributes[f"{logical}.Arn"] = f"arn:aws:scheduler:{r}:{a}:schedule/default/{name}"
            elif kind == "AWS::SQS::Queue":  # named only: dead-letter targets, which the embedded AWS never uses
                self.resources[logical] = f"https://sqs.{r}.amazonaws.com/{a}/{name}"
                self.attributes[f"{logical}.Arn"] = f"arn:aws:sqs:{r}:{a}:{name}"
                self.attributes[f"{logical}.QueueName"] = name
            else:
                self.resources[logical] = name

    def _resolver(self) -> Resolver:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        return Resolver(self.template, self.parameters, self.resources, self.attributes, pseudo)

    def rendered_definition(self) -> str:
        """The state machine definition with its DefinitionSubstitutions applied over the physical names."""
        self._names()
        res = self._resolver()
        [props] = [
            res.resolve(r.get("Properties") or {})
            for r in self.template["Resources"].values()
            if r["Type"] == "AWS::Serverless::StateMachine"
        ]
        text = (self.template_path.parent / props["DefinitionUri"]).read_text(encoding="utf-8")
        return substitute_definition(text, props.get("DefinitionSubstitutions") or {})


class EmbeddedStack(StackLayout):
    """The stack in moto, built from the template.

    Args:
        runner: what a training job does (``stratos run``: a
            :class:`~stratos_cli.local.process_runner.ProcessTrainingRunner`, the real training container).
        parameters: template parameter overrides (strings); the poll intervals are worth setting to 0.
        account: the SageMaker account's quotas and endpoint courses (default:
            :class:`~stratos_cli.local.moto_hooks.sagemaker.DefaultAccount`, every quota, every endpoint
            InService after one poll).
        template: the template file.
        region: the region everything lives in (``stratos run`` builds it in the spec's ``constraints.region``).
        stack_name: prefix of every physical name.
        extra_env: environment set on top of the functions' template environment (local-only settings, e.g.
            ``POWERTOOLS_METRICS_DISABLED``); restored on exit like the rest.
    """

    def __init__(
        self,
        *,
        runner: TrainingRunner,
        parameters: Mapping[str, str] | None = None,
        account: SageMakerAccount | None = None,
        template: str | Path = DEFAULT_TEMPLATE,
        region: str = "us-east-1",
        stack_name: str = "stratos",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(parameters, template, region, stack_name)
        self._runner = runner
        self._account = account
        self._extra_env = dict(extra_env or {})
        self.function_env: dict[str, str] = {}
        self.skipped: list[str] = []
        self.definition = ""
        self.state_machine_arn = ""
        self.hooks: Hooks | None = None
        self._exits: list[Any] = []
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._http_url = ""

    # ----------------------------------------------------------------------------------------------------
    # Lifecycle.

    def __enter__(self) -> EmbeddedStack:
        from moto import mock_aws

        self._set_env(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "SAGEMAKER_VALIDATE_ROLE": "false",
            }
        )
        mock = mock_aws(config=cast(Any, _MOTO_CONFIG))
        mock.start()
        self._exits.append(mock.stop)
        hooks_cm = installed(self._runner, self._account)
        self.hooks = hooks_cm.__enter__()
        self._exits.append(lambda: hooks_cm.__exit__(None, None, None))
        try:
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._wait_quiet()
        while self._exits:
            self._exits.pop()()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._reset_stratos()

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    @staticmethod
    def _reset_stratos() -> None:
        from stratos.pipeline.services import reset_services

        reset_services()

    def _wait_quiet(self, timeout: float = 30.0) -> None:
        """Let running executions finish before moto goes away (their threads would fail noisily)."""
        if not self.state_machine_arn:
            return
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.executions(status="RUNNING"):
                time.sleep(0.05)
        except Exception:  # moto already stopped: nothing left to wait for
            return

    @property
    def runner(self) -> TrainingRunner:
        """The training runner behind the embedded SageMaker."""
        return self._runner

    def serve_http(self) -> str:
        """Serve the embedded AWS over HTTP on 127.0.0.1 (a free port) for processes outside this one (a local
        training job calling a teacher endpoint); return its URL, ``http://127.0.0.1:<port>``. Started once,
        stopped with the stack.

        moto's threaded server answers from the same in-memory backends as this process's mock, and through
        the same hooks (:mod:`stratos_cli.local.moto_hooks`), so an InvokeEndpoint sent to it reaches the local
        endpoint server as one made here does.
        """
        if self._http_url:
            return self._http_url
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._exits.append(server.stop)
        host, port = server.get_host_and_port()
        self._http_url = f"http://{host}:{port}"
        return self._http_url

    def client(self, service: str) -> Any:
        """A boto3 client of the embedded AWS."""
        with self._lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, region_name=self.region)
            return self._clients[service]

    # ----------------------------------------------------------------------------------------------------
    # Building from the template.

    def _build(self) -> None:
        self._names()
        res = self._resolver()
        resources = self.template["Resources"]
        by_type: dict[str, list[str]] = {}
        for logical, resource in resources.items():
            by_type.setdefault(resource["Type"], []).append(logical)
        iam = self.client("iam")
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        )
        for logical in by_type.pop("AWS::IAM::Role", []):
            props = res.resolve(resources[logical].get("Properties") or {})
            iam.create_role(
                RoleName=self.resources[logical], AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
            )
        service_role = iam.create_role(RoleName=f"{self.stack_name}-sam-generated", AssumeRolePolicyDocument=trust)[
            "Role"
        ]["Arn"]
        for logical in by_type.pop("AWS::S3::Bucket", []):
            self._bucket(self.resources[logical], res.resolve(resources[logical].get("Properties") or {}))
        for logical in by_type.pop("AWS::DynamoDB::Table", []):
            self._table(self.resources[logical], res.resolve(resources[logical].get("Properties") or {}))
        globals_fn = res.resolve((self.template.get("Globals") or {}).get("Function") or {})
        for logical in by_type.pop("AWS::Serverless::Function", []):
            self._function(logical, globals_fn, res.resolve(resources[logical].get("Properties") or {}), service_role)
        self._set_env({**self.function_env, **self._extra_env})
        for logical in by_type.pop("AWS::Serverless::StateMachine", []):
            self._state_machine(logical, res.resolve(resources[logical].get("Properties") or {}), service_role)
        for logical in by_type.pop("AWS::Scheduler::Schedule", []):
            self._schedule(self.resources[logical], res.resolve(resources[logical].get("Properties") or {}))
        self.skipped = sorted(f"{logical} ({kind})" for kind, logicals in by_type.items() for logical in logicals)
        self._reset_stratos()

    def _bucket(self, name: str, props: Mapping[str, Any]) -> None:
        s3 = self.client("s3")
        self.create_bucket(name)
        if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        notification = props.get("NotificationConfiguration") or {}
        if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        rules = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if rules:  # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault
            api_rules = [{"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]} for r in rules]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": api_rules})
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )

    def _table(self, name: str, props: Mapping[str, Any]) -> None:
        ddb = self.client("dynamodb")
        args: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        ddb.create_table(**args)
        if (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )

    def _function(self, logical: str, globals_fn: Mapping[str, Any], props: Mapping[str, Any], role: str) -> None:
        merged = {**globals_fn, **props}
        env = dict((globals_fn.get("Environment") or {}).get("Variables") or {})
        env.update((props.get("Environment") or {}).get("Variables") or {})
        for key, value in env.items():
            value = str(value)
            if self.function_env.get(key, value) != value:
                raise RuntimeError(
                    f"function {logical}: {key} differs between functions; the embedded stack shares one environment"
                )
            self.function_env[key] = value
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("README", "the embedded stack runs functions/lambda/ in-process")
        function = self.client("lambda").create_function(
            FunctionName=self.resources[logical],
            Runtime=merged.get("Runtime", "python3.11"),
            Role=role,
            Handler=merged["Handler"],
            Code={"ZipFile": code.getvalue()},
            Timeout=int(merged.get("Timeout", 3)),
            MemorySize=int(merged.get("MemorySize", 128)),
            Environment={"Variables": {k: str(v) for k, v in env.items()}},
        )
        self._rules(self.resources[logical], props.get("Events") or {}, function["FunctionArn"], role)

    def _state_machine(self, logical: str, props: Mapping[str, Any], service_role: str) -> None:
        text = (self.template_path.parent / props["DefinitionUri"]).read_text(encoding="utf-8")
        self.definition = substitute_definition(text, props.get("DefinitionSubstitutions") or {})
        name = self.attributes[f"{logical}.Name"]
        sfn = self.client("stepfunctions")
        arn = sfn.create_state_machine(
            name=name, definition=self.definition, roleArn=props["Role"], type=props.get("Type", "STANDARD")
        )["stateMachineArn"]
        self.state_machine_arn = arn
        self._rules(name, props.get("Events") or {}, arn, service_role)

    def _rules(self, owner: str, events: Mapping[str, Any], target_arn: str, role: str) -> None:
        """SAM ``Events`` of type EventBridgeRule: a rule with the template's pattern, targeting ``target_arn``."""
        client = self.client("events")
        for event_name, event in events.items():
            if event.get("Type") != "EventBridgeRule":
                raise RuntimeError(f"{owner}.Events.{event_name}: only EventBridgeRule events are embedded")
            rule = f"{owner}-{event_name}"[:64]
            client.put_rule(Name=rule, EventPattern=json.dumps(event["Properties"]["Pattern"]), State="ENABLED")
            client.put_targets(Rule=rule, Targets=[{"Id": "Target", "Arn": target_arn, "RoleArn": role}])

    def _schedule(self, name: str, props: Mapping[str, Any]) -> None:
        target = props["Target"]
        self.client("scheduler").create_schedule(
            Name=name,
            ScheduleExpression=props["ScheduleExpression"],
            ScheduleExpressionTimezone=props.get("ScheduleExpressionTimezone", "UTC"),
            FlexibleTimeWindow=props["FlexibleTimeWindow"],
            State=props.get("State", "ENABLED"),
            Target={"Arn": target["Arn"], "RoleArn": target["RoleArn"], "Input": target["Input"]},
        )

    # ----------------------------------------------------------------------------------------------------
    # Using the stack.

    def output(self, logical: str) -> str:
        """The physical name (``Ref``) of a resource, e.g. ``SpecsBucket``."""
        return self.resources[logical]

    @property
    def specs_bucket(self) -> str:
        return self.resources["SpecsBucket"]

    @property
    def artifacts_bucket(self) -> str:
        return self.resources["ArtifactsBucket"]

    def create_bucket(self, name: str) -> None:
        """CreateBucket in the stack's region (outside us-east-1, S3 needs the region as LocationConstraint)."""
        args: dict[str, Any] = {"Bucket": name}
        if self.region != S3_DEFAULT_REGION:
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client("s3").create_bucket(**args)

    def upload(self, bucket: str, key: str, body: bytes) -> None:
        """PutObject (the training runner writes job outputs with it)."""
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)

    def upload_spec(self, body: bytes | Mapping[str, Any], key: str = "specs/spec.json") -> str:
        """Upload a spec to the specs bucket, as a user would; the bucket's EventBridge notification and the
        template's rule start the execution. Returns the object's version id."""
        data = json.dumps(body).encode("utf-8") if isinstance(body, Mapping) else body
        response = self.client("s3").put_object(Bucket=self.specs_bucket, Key=key, Body=data)
        return str(response.get("VersionId", ""))

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Deliver an event to the default bus's rules (as EventBridge would: a redelivered S3 event, say)."""
        from moto.events.models import events_backends

        backend = events_backends[ACCOUNT][self.region]
        for bus in backend.event_buses.values():
            for rule in list(bus.rules.values()):
                rule.send_to_targets(cast(Any, dict(event)), transform_input=False)

    def start(self, payload: Mapping[str, Any], name: str) -> str:
        """StartExecution directly (a run request, as the sweep or an operator would)."""
        return str(
            self.client("stepfunctions").start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )["executionArn"]
        )

    def executions(self, status: str | None = None) -> list[dict[str, Any]]:
        """The state machine's executions (newest first)."""
        sfn = self.client("stepfunctions")
        args: dict[str, Any] = {"stateMachineArn": self.state_machine_arn}
        if status:
            args["statusFilter"] = status
        out: list[dict[str, Any]] = []
        for page in sfn.get_paginator("list_executions").paginate(**args):
            out.extend(page["executions"])
        return out

    def wait(self, execution_arn: str, timeout: float = 60.0) -> dict[str, Any]:
        """DescribeExecution once the execution has ended.

        Raises:
            StackError: still running after ``timeout`` seconds.
        """
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise StackError(f"{execution_arn} still RUNNING after {timeout} s")
            time.sleep(0.02)

    def wait_for_executions(self, count: int, timeout: float = 10.0) -> list[str]:
        """ARNs of the first ``count`` executions (oldest first) once that many have started."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.executions()
            if len(found) >= count:
                return [e["executionArn"] for e in sorted(found, key=lambda e: e["startDate"])][:count]
            if time.monotonic() > deadline:
                raise StackError(f"{len(found)} executions started, expected {count}")
            time.sleep(0.02)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's history events, oldest first."""
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            events.extend(page["events"])
        return events

    def state_outputs(self, execution_arn: str) -> Iterator[tuple[str, str]]:
        """``(state name, output JSON text)`` for every state the execution left."""
        for event in self.history(execution_arn):
            details = event.get("stateExitedEventDetails")
            if details:
                yield details["name"], details.get("output", "")

    def visited(self, execution_arn: str) -> list[str]:
        """The states the execution entered, in order."""
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(execution_arn)
            if "stateEnteredEventDetails" in e
        ]

    def fire_schedule(self, at: datetime, schedule_logical: str = "RedistillSchedule") -> dict[str, Any]:
        """Do what EventBridge Scheduler does at ``at``: invoke the schedule's target with its Input, the
        ``<aws.scheduler.*>`` placeholders filled in. Returns the target's result.

        Raises:
            StackError: the target failed (with its error type and message).
        """
        schedule = self.client("scheduler").get_schedule(Name=self.resources[schedule_logical])
        target = schedule["Target"]
        payload = (
            target["Input"]
            .replace("<aws.scheduler.schedule-arn>", schedule["Arn"])
            .replace("<aws.scheduler.scheduled-time>", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            .replace("<aws.scheduler.execution-id>", f"local-{at.timestamp():.0f}")
        )
        response = self.client("lambda").invoke(FunctionName=target["Arn"], Payload=payload.encode("utf-8"))
        result: dict[str, Any] = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise StackError(f"{target['Arn']} failed: {result.get('errorType')}: {result.get('errorMessage')}")
        return result

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        """The run's DynamoDB record."""
        from stratos.aws.records import RunRecords

        return RunRecords(self.resources["RunsTable"], self.client("dynamodb")).get(run_id)

    def task_record(self, task_id: str) -> dict[str, Any] | None:
        """The task's DynamoDB record."""
        from stratos.aws.records import RunRecords

        return RunRecords(self.resources["RunsTable"], self.client("dynamodb")).get_task(task_id)


def render_definition(parameters: Mapping[str, str] | None = None, template: str | Path = DEFAULT_TEMPLATE) -> str:
    """The state machine definition as deployed (DefinitionSubstitutions applied with the embedded stack's
    physical names), without starting anything: for static validators such as asl-validator."""
    return StackLayout(parameters=parameters, template=template).rendered_definition()


def main(argv: list[str] | None = None) -> int:
    """``python -m stratos_cli.local.stack --render-definition``: print the deployed definition."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stratos_cli.local.stack")
    parser.add_argument("--render-definition", action="store_true", help="print the definition as deployed")
    args = parser.parse_args(argv)
    if args.render_definition:
        print(render_definition())
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main())
