"""The distillation state machine, executed end to end (moto runs the ASL; the real handlers run in-process;
a scripted training runner stands in for the training container; SageMaker endpoints change state over polls).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratos.naming import SpecIdentity, run_names
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import plan
from stratos.planner.pricing import snapshot_price_table
from stratos.spec import validate_spec_document
from tests.conftest import load_event
from tests.doubles import EndpointScript, Quotas, Script, sample_metrics
from tests.functional.conftest import SFN_LIMIT, Run, mahjong_spec

ENDPOINT = "stratos-mahjong-winning-tiles"


def planned(spec_doc: dict[str, Any], unavailable: tuple[str, ...] = ()) -> Any:
    """The frontier the SelectPlan step will compute for ``spec_doc`` (same planner, same snapshot prices)."""
    spec = validate_spec_document(spec_doc)
    return plan(spec, snapshot_price_table(spec.constraints.region, load_catalog()), unavailable=unavailable)


def assert_states_small_and_identity_kept(run: Run, execution_arn: str, key: str, version: str | None) -> int:
    """Every state's output < 256 KB; from ValidateSpec on, each carries the same run id and spec identity."""
    largest = 0
    run_ids, identities = set(), set()
    for name, output, size in run.outputs(execution_arn):
        assert size < SFN_LIMIT, f"{name} output is {size} bytes"
        largest = max(largest, size)
        if name == "ReadTrigger":
            continue
        assert "run" in output, f"{name} lost the run context"
        run_ids.add(output["run"]["names"]["run_id"])
        identities.add(json.dumps(output["run"]["spec"], sort_keys=True))
    assert len(run_ids) == 1 and len(identities) == 1, (run_ids, identities)
    spec = json.loads(identities.pop())
    assert (spec["key"], spec["version_id"]) == (key, version)
    return largest


def test_success_path_end_to_end(make_stack):
    run = make_stack()
    stack = run.stack
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED", described
    arn = described["executionArn"]
    assert stack.visited(arn) == [
        "ReadTrigger", "ValidateSpec", "LookUpPrices", "SelectPlan", "PrepareTrainingJob", "StartTrainingJob",
        "WaitForTraining", "DescribeTrainingJob", "TrainingStatus",  # InProgress
        "WaitForTraining", "DescribeTrainingJob", "TrainingStatus",  # Completed
        "EvaluationGate", "GatePassed", "Deploy",
        "WaitForEndpoint", "DescribeEndpoint", "EndpointStatus", "CountEndpointPoll", "PollsLeft",  # Creating
        "WaitForEndpoint", "DescribeEndpoint", "EndpointStatus",  # InService
        "CheckLatency", "LatencyWithinLimit",  # measured p50 within latency.p50_ms x 1.10
        "FinishDeployment", "RecordSuccess", "PublishRunSucceeded", "RunSucceeded",
    ]  # fmt: skip

    # One training job, created by the ASL with the template's image, role and bucket.
    [request] = run.sagemaker.training_requests
    [version] = [v["VersionId"] for v in stack.client("s3").list_object_versions(Bucket=stack.specs_bucket)["Versions"]]
    identity = SpecIdentity(bucket=stack.specs_bucket, key="specs/mahjong.json", version_id=version)
    names = run_names(identity, "mahjong-winning-tiles")
    assert request["TrainingJobName"] == names.training_job_name
    assert request["AlgorithmSpecification"]["TrainingImage"] == stack.parameters["TrainingImageUri"]
    assert request["RoleArn"] == stack.attributes["SageMakerExecutionRole.Arn"]
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{stack.artifacts_bucket}/runs/{names.run_id}/training"
    choice = planned(mahjong_spec()).chosen
    assert request["ResourceConfig"]["InstanceType"] == choice.training_instance
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == choice.max_runtime_seconds
    assert request["HyperParameters"]["task"] == "mahjong-winning-tiles"
    assert {c["ChannelName"] for c in request["InputDataConfig"]} == {"teacher", "student"}

    # The endpoint serves this run's config; the run record and the task record say so.
    [endpoint] = run.endpoints()
    assert (endpoint["EndpointName"], endpoint["EndpointStatus"]) == (ENDPOINT, "InService")
    assert endpoint["EndpointConfigName"] == names.endpoint_config_name
    record = stack.run_record(names.run_id)
    assert record is not None
    assert record["status"] == "SUCCEEDED" and record["execution_arn"] == arn
    assert record["spec"]["version_id"] == version and record["task_id"] == "mahjong-winning-tiles"
    assert record["plan"]["student"] == choice.student and record["plan"]["serving_instance"] == choice.serving_instance
    assert record["estimate"]["training_cost_usd"] == pytest.approx(choice.training_cost_usd, abs=1e-3)
    assert record["actual"]["billable_seconds"] == 600 and record["actual"]["training_cost_usd"] > 0
    assert record["mode"]["actual"] == "injection" and record["mode"]["evidence"]["coverage"] == pytest.approx(0.31)
    assert record["metrics"]["student_after_accuracy"] == pytest.approx(0.42)
    assert record["gate"]["passed"] is True
    assert record["endpoint"] == {"name": ENDPOINT, "config": names.endpoint_config_name}
    task = stack.task_record("mahjong-winning-tiles")
    assert task is not None and task["last_success"]["run_id"] == names.run_id

    # One EventBridge event, Stratos Run Succeeded, with the summary.
    [event] = run.run_events()
    assert event["detail-type"] == "Stratos Run Succeeded"
    assert event["detail"]["run_id"] == names.run_id and event["detail"]["endpoint_name"] == ENDPOINT

    # Nothing was written under the watched prefix, so nothing started a second execution.
    keys = [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=stack.specs_bucket)["Contents"]]
    assert keys == ["specs/mahjong.json"]
    assert len(stack.executions()) == 1
    written = [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=stack.artifacts_bucket)["Contents"]]
    assert written and all(k.startswith(f"runs/{names.run_id}/") for k in written)

    largest = assert_states_small_and_identity_kept(run, arn, "specs/mahjong.json", version)
    assert largest < 32 * 1024


def test_a_jsonl_spec_sends_createtrainingjob_strings_only(make_stack):
    """User JSONL data has no train_size / eval_size: those hyperparameters are left out, never sent as JSON
    nulls (SageMaker, and the embedded AWS like it, refuses a HyperParameters value that is not a string)."""
    run = make_stack()
    bucket = f"s3://{run.stack.artifacts_bucket}/data/words"
    for name in ("train.jsonl", "eval.jsonl"):
        run.stack.client("s3").put_object(Bucket=run.stack.artifacts_bucket, Key=f"data/words/{name}", Body=b"{}\n")
    data = {
        "source": "jsonl",
        "format": "chat",
        "train_uri": f"{bucket}/train.jsonl",
        "eval_uri": f"{bucket}/eval.jsonl",
    }
    spec = mahjong_spec(**{"data": data, "task.kind": "open-qa", "task.metric": "exact-match"})
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    [request] = run.sagemaker.training_requests
    hp = request["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values()), hp
    assert hp["task"] == "jsonl" and "train_size" not in hp and "eval_size" not in hp
    assert [c["ChannelName"] for c in request["InputDataConfig"]][2:] == ["train", "eval"]


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("s3://someone-elses-prod-data/pii/customers.jsonl", "is not one this stack reads data from"),
        ("s3://{artifacts}/runs/other-run/spec.json", "this bucket belongs to Stratos"),
        ("s3://{artifacts}/data/words/missing.jsonl", "no such object in S3"),
    ],
)
def test_data_outside_the_stack_or_missing_is_refused_before_any_job(make_stack, where, reason):
    """Data confinement: a foreign bucket, another run's files or a missing object fail ValidateSpec with the
    field named; no spec copy is written and no training job is created."""
    run = make_stack()
    artifacts = run.stack.artifacts_bucket
    s3 = run.stack.client("s3")
    s3.put_object(Bucket=artifacts, Key="data/words/eval.jsonl", Body=b"{}\n")
    data = {
        "source": "jsonl",
        "format": "chat",
        "train_uri": where.format(artifacts=artifacts),
        "eval_uri": f"s3://{artifacts}/data/words/eval.jsonl",
    }
    spec = mahjong_spec(**{"data": data, "task.kind": "open-qa", "task.metric": "exact-match"})
    described = run.upload_and_wait(spec)
    assert described["status"] == "FAILED"
    assert described["error"] == "SpecValidationError"
    assert "data.train_uri" in described["cause"] and reason in described["cause"]
    assert "data.eval_uri" not in described["cause"]
    assert run.sagemaker.training_requests == []
    assert s3.list_objects_v2(Bucket=artifacts, Prefix="runs/").get("KeyCount", 0) == 0


def test_a_depth_pruned_student_trains_from_its_base_and_deploys_under_its_own_id(make_stack):
    """The planner picks the catalog's 15-layer SmolLM2 for alignment with the full model as teacher; the job
    reads the BASE model's staged folder and prunes it at load; the job, model and config name the copy."""
    run = make_stack()
    stack = run.stack
    candidates = {"teachers": ["smollm2-135m-instruct"], "students": ["smollm2-135m-instruct-l15"]}
    spec = mahjong_spec(**{"candidates": candidates, "distillation.mode": "alignment", "constraints.min_accuracy": 0.0})
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    [request] = run.sagemaker.training_requests
    base = f"s3://{stack.artifacts_bucket}/models/smollm2-135m-instruct/"
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]} == {
        "teacher": base,
        "student": base,
    }
    hp = request["HyperParameters"]
    assert (hp["teacher"], hp["student"]) == ("channel:teacher", "channel:student@layers=15")
    assert (hp["teacher_id"], hp["student_id"]) == ("smollm2-135m-instruct", "smollm2-135m-instruct-l15")
    assert {"Key": "stratos:student", "Value": "smollm2-135m-instruct-l15"} in request["Tags"]
    output = json.loads(described["output"])
    run_id = output["run"]["names"]["run_id"]
    assert stack.run_record(run_id)["plan"]["student"] == "smollm2-135m-instruct-l15"
    sm = stack.client("sagemaker")
    [model] = sm.list_models()["Models"]
    [config] = sm.list_endpoint_configs()["EndpointConfigs"]
    for arn in (model["ModelArn"], config["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags["stratos:student"] == "smollm2-135m-instruct-l15" and tags["stratos:run-id"] == run_id


def test_training_failed(make_stack):
    reason = "AlgorithmError: CUDA out of memory (at trainer.py:120)"
    run = make_stack(script=Script(statuses=("InProgress", "Failed"), failure_reason=reason))
    described = run.upload_and_wait(mahjong_spec())
    assert (described["status"], described["error"]) == ("FAILED", "TrainingFailedError")
    visited = run.stack.visited(described["executionArn"])
    assert visited[-5:] == ["TrainingStatus", "TrainingFailed", "RecordFailure", "PublishRunFailed", "RunFailed"]
    assert "EvaluationGate" not in visited and run.endpoints() == []
    [record] = [
        run.stack.run_record(i.result["run"]["names"]["run_id"])
        for i in run.lambdas.of("validate_spec.app.lambda_handler")
    ]
    assert record["status"] == "FAILED" and record["error"]["name"] == "TrainingFailedError"
    assert reason in record["error"]["reason"]  # SageMaker's FailureReason, added by RecordFailure
    assert record["actual"]["billable_seconds"] == 600  # a failed job is billed too
    [event] = run.run_events()
    assert event["detail-type"] == "Stratos Run Failed" and event["detail"]["error"] == "TrainingFailedError"


def test_training_stopped_at_max_runtime(make_stack):
    run = make_stack(script=Script(statuses=("InProgress", "InProgress", "Stopped")))
    described = run.upload_and_wait(mahjong_spec())
    assert (described["status"], described["error"]) == ("FAILED", "TrainingStoppedError")
    assert "MaxRuntimeExceeded" in described["cause"]
    assert run.stack.visited(described["executionArn"]).count("DescribeTrainingJob") == 3
    assert run.endpoints() == []


def test_gate_rejection_never_touches_the_live_endpoint(make_stack):
    run = make_stack()
    first = run.upload_and_wait(mahjong_spec())
    assert first["status"] == "SUCCEEDED"
    [live] = run.endpoints()

    run.stack.runner.default = Script(metrics=sample_metrics(accuracy=0.20))  # below min_accuracy 0.25
    second = run.upload_and_wait(mahjong_spec(description="v2"))  # a new version of the same key
    assert (second["status"], second["error"]) == ("FAILED", "EvaluationRejectedError")
    assert "below constraints.min_accuracy" in second["cause"]
    visited = run.stack.visited(second["executionArn"])
    assert "Deploy" not in visited and visited[-4:] == [
        "GateRejected",
        "RecordFailure",
        "PublishRunFailed",
        "RunFailed",
    ]
    [after] = run.endpoints()
    assert after["EndpointConfigName"] == live["EndpointConfigName"] and run.sagemaker.update_requests == []
    assert len(run.sagemaker.training_requests) == 2

    # A student worse than the one serving is rejected too (min_accuracy met, regression > tolerance).
    run.stack.runner.default = Script(metrics=sample_metrics(accuracy=0.30))
    third = run.upload_and_wait(mahjong_spec(description="v3"))
    assert third["error"] == "EvaluationRejectedError" and "worse than the serving model" in third["cause"]
    assert run.sagemaker.update_requests == []


def test_deploy_updates_an_existing_endpoint_blue_green(make_stack):
    run = make_stack(endpoint_script=EndpointScript(updating_polls=2))
    first = run.upload_and_wait(mahjong_spec())
    [old] = run.endpoints()
    second = run.upload_and_wait(mahjong_spec(description="new version"))
    assert second["status"] == "SUCCEEDED"
    [update] = run.sagemaker.update_requests
    config = update["DeploymentConfig"]
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert [a["AlarmName"] for a in config["AutoRollbackConfiguration"]["Alarms"]] == [
        f"stratos-{ENDPOINT}-5xx",
        f"stratos-{ENDPOINT}-p50-latency",
    ]
    alarms = run.stack.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"stratos-{ENDPOINT}")["MetricAlarms"]
    assert len(alarms) == 2
    [new] = run.endpoints()
    assert new["EndpointConfigName"] == update["EndpointConfigName"] != old["EndpointConfigName"]
    # The old config and its model were deleted only after InService on the new one.
    sm = run.stack.client("sagemaker")
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [new["EndpointConfigName"]]
    assert len(sm.list_models()["Models"]) == 1
    polls = [
        o["endpoint"]["status"] for name, o, _ in run.outputs(second["executionArn"]) if name == "DescribeEndpoint"
    ]
    assert polls == ["Updating", "Updating", "InService"]  # FinishDeployment (the deletion) ran after the last
    record = run.stack.run_record(json.loads(second["output"])["run"]["names"]["run_id"])
    assert record["deployment"]["deleted_configs"] == [old["EndpointConfigName"]]
    deploy_results = [i.result for i in run.lambdas.of("deploy.app.lambda_handler") if i.result]
    assert [d["action"] for d in deploy_results] == ["created", "updated"]
    assert deploy_results[1]["previous_config_name"] == old["EndpointConfigName"]
    assert first["status"] == "SUCCEEDED"


def test_rolled_back_update_fails_the_run_and_keeps_the_old_model(make_stack):
    run = make_stack(endpoint_script=EndpointScript(update_outcome="RolledBack"))
    assert run.upload_and_wait(mahjong_spec())["status"] == "SUCCEEDED"
    [old] = run.endpoints()
    second = run.upload_and_wait(mahjong_spec(description="v2"))
    assert (second["status"], second["error"]) == ("FAILED", "DeploymentError")
    assert "rolled back" in second["cause"]
    [after] = run.endpoints()
    assert after["EndpointConfigName"] == old["EndpointConfigName"] and after["EndpointStatus"] == "InService"
    sm = run.stack.client("sagemaker")
    assert old["EndpointConfigName"] in [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]


def test_training_quota_falls_back_to_the_next_frontier_plan(make_stack):
    frontier = planned(mahjong_spec()).selection.frontier
    first = frontier[0].training_instance
    run = make_stack(quotas=Quotas(training={first}))
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED", described
    visited = run.stack.visited(described["executionArn"])
    assert visited[5:9] == ["StartTrainingJob", "TrainingQuotaExceeded", "FallBackToNextPlan", "RetrainOrRedeploy"]
    [request] = run.sagemaker.training_requests  # the refused create made no job
    assert request["ResourceConfig"]["InstanceType"] != first
    assert request["TrainingJobName"].endswith(f"-a{_attempt_avoiding(frontier, {first})}")
    record = run.stack.run_record(request["TrainingJobName"].rsplit("-", 1)[0])
    assert record["fallback"]["blocked"] == [first] and record["fallback"]["retrain"] is True
    assert record["status"] == "SUCCEEDED"
    # FallBackToNextPlan returns the whole document: the run's identity must survive it.
    version = record["spec"]["version_id"]
    assert_states_small_and_identity_kept(run, described["executionArn"], "specs/mahjong.json", version)


def _attempt_avoiding(frontier: list[Any], blocked: set[str]) -> int:
    return next(i for i, p in enumerate(frontier) if i > 0 and not {p.training_instance, p.serving_instance} & blocked)


def test_serving_quota_falls_back_and_reuses_the_trained_student_when_it_can(make_stack):
    spec = mahjong_spec(**{"constraints.budget_usd": 1200})  # room for GPU serving too
    result = planned(spec)
    chosen = result.chosen
    run = make_stack(quotas=Quotas(endpoint={chosen.serving_instance}))
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    visited = run.stack.visited(described["executionArn"])
    assert "ServingQuotaExceeded" in visited and "FallBackToNextPlan" in visited
    blocked = {chosen.serving_instance}
    next_plan = result.selection.frontier[_attempt_avoiding(result.selection.frontier, blocked)]
    same_student = (next_plan.teacher, next_plan.student, next_plan.mode) == (
        chosen.teacher,
        chosen.student,
        chosen.mode,
    )
    assert len(run.sagemaker.training_requests) == (1 if same_student else 2)
    assert visited.count("EvaluationGate") == (1 if same_student else 2)
    [endpoint] = run.endpoints()
    sm = run.stack.client("sagemaker")
    variant = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"][0]
    assert variant["InstanceType"] == next_plan.serving_instance != chosen.serving_instance


def test_serving_quota_with_no_other_serving_type_fails_naming_it(make_stack):
    # With the full 135M student every frontier plan of this budget serves on the same CPU type (its pruned
    # copies would also fit the next size down).
    spec = mahjong_spec(candidates={"students": ["smollm2-135m-instruct"]})
    result = planned(spec)
    chosen = result.chosen
    assert {p.serving_instance for p in result.selection.frontier} == {chosen.serving_instance}
    run = make_stack(quotas=Quotas(endpoint={chosen.serving_instance}))
    described = run.upload_and_wait(spec)
    assert (described["status"], described["error"]) == ("FAILED", "QuotaExceededError")
    assert f"{chosen.serving_instance} (serving) is over the account's quota" in described["cause"]
    assert run.endpoints() == []


def test_quota_with_no_plan_left_fails_naming_the_instance_type(make_stack):
    frontier = planned(mahjong_spec()).selection.frontier
    every = {p.training_instance for p in frontier}
    run = make_stack(quotas=Quotas(training=every))
    described = run.upload_and_wait(mahjong_spec(), timeout=120)
    assert (described["status"], described["error"]) == ("FAILED", "QuotaExceededError")
    assert any(t in described["cause"] for t in every) and "quota" in described["cause"]
    assert run.sagemaker.training_requests == [] and run.endpoints() == []


def test_duplicate_event_starts_exactly_one_training_job(make_stack):
    run = make_stack()
    stack = run.stack
    first = run.upload_and_wait(mahjong_spec())
    assert first["status"] == "SUCCEEDED"
    [(_, event, _)] = stack.hooks.rules.deliveries
    stack.deliver(event)  # at-least-once delivery: the same S3 event again, after the run finished
    stack.deliver(event)  # ...and again
    executions = stack.wait_for_executions(3)
    for arn in executions[1:]:
        described = stack.wait(arn)
        assert described["status"] == "SUCCEEDED"
        assert stack.visited(arn) == ["ReadTrigger", "ValidateSpec", "IgnoreDuplicateEvent"]
    assert len(run.sagemaker.training_requests) == 1
    run_id = run.lambdas.of("validate_spec.app.lambda_handler")[0].result["run"]["names"]["run_id"]
    assert stack.run_record(run_id)["execution_arn"] == first["executionArn"]


def test_duplicate_events_racing_start_one_training_job(make_stack):
    run = make_stack()
    stack = run.stack
    stack.upload_spec(mahjong_spec(), key="specs/mahjong.json")
    [(_, event, _)] = stack.hooks.rules.deliveries
    for _ in range(3):  # three more copies, delivered while the first execution is still running
        stack.deliver(event)
    arns = stack.wait_for_executions(4)
    described = [stack.wait(a) for a in arns]
    assert [d["status"] for d in described] == ["SUCCEEDED"] * 4
    assert min(d["startDate"] for d in described[1:]) < described[0]["stopDate"]  # they overlapped
    owners = [d for d in described if stack.visited(d["executionArn"])[-1] == "RunSucceeded"]
    ignored = [d for d in described if stack.visited(d["executionArn"])[-1] == "IgnoreDuplicateEvent"]
    assert len(owners) == 1 and len(ignored) == 3
    assert len(run.sagemaker.training_requests) == 1
    run_id = json.loads(owners[0]["output"])["run"]["names"]["run_id"]
    assert stack.run_record(run_id)["execution_arn"] == owners[0]["executionArn"]


def test_invalid_spec_fails_naming_the_field_and_starts_nothing(make_stack):
    run = make_stack()
    described = run.upload_and_wait(mahjong_spec(**{"constraints.budget_usd": "400"}))
    assert (described["status"], described["error"]) == ("FAILED", "SpecValidationError")
    assert "constraints.budget_usd" in described["cause"]
    assert run.sagemaker.training_requests == []
    [record_event] = run.run_events()
    assert record_event["detail"]["error"] == "SpecValidationError"
    assert "constraints.budget_usd" in record_event["detail"]["reason"]


def test_object_outside_specs_prefix_starts_nothing(make_stack):
    run = make_stack()
    run.stack.upload_spec(mahjong_spec(), key="runs/not-a-spec.json")
    run.stack.upload_spec(b"{}", key="notes/readme.json")
    assert run.stack.executions() == []


def test_transient_throttling_is_retried(make_stack, monkeypatch):
    import look_up_prices.app as app

    from stratos.errors import ThrottlingError

    real = app.look_up_prices
    calls = {"n": 0}

    def flaky(event: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ThrottlingError("s3:PutObject: throttled by AWS (SlowDown)")
        return real(event)

    monkeypatch.setattr(app, "look_up_prices", flaky)
    run = make_stack()
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED"
    assert calls["n"] == 2
    assert run.stack.visited(described["executionArn"]).count("LookUpPrices") == 1  # retried inside the state


def test_scheduled_redistill_waits_while_the_previous_update_is_still_updating(make_stack):
    run = make_stack()
    stack = run.stack
    first = run.upload_and_wait(mahjong_spec())
    assert first["status"] == "SUCCEEDED"
    schedule = stack.client("scheduler").get_schedule(Name=stack.output("RedistillSchedule"))
    assert schedule["State"] == "DISABLED"  # off unless the parameter turns it on

    # Another deployment (say, a manual one) is still updating the endpoint when the re-distilled run deploys.
    stack.hooks.sagemaker.hold(ENDPOINT, "Updating", polls=3)
    at = datetime.now(UTC) + timedelta(days=31)  # past max_age_days (30)
    report = stack.fire_schedule(at)
    assert report["started"] == 1, report
    [entry] = report["entries"]
    assert entry["reasons"][0].startswith("max_age_days")
    again = stack.fire_schedule(at)  # Scheduler retried the same invocation: no second run
    assert again["entries"][0]["started"] is True

    arns = stack.wait_for_executions(2)
    assert len(stack.executions()) == 2
    described = stack.wait(arns[1])
    assert described["status"] == "SUCCEEDED", described
    visited = stack.visited(arns[1])
    assert visited.count("WaitForBusyEndpoint") >= 2
    busy = [i for i in run.lambdas.of("deploy.app.lambda_handler") if i.error_type == "ResourceBusyError"]
    assert len(busy) >= 2
    [endpoint] = run.endpoints()
    assert endpoint["EndpointConfigName"] == json.loads(described["output"])["deployment"]["endpoint_config_name"]
    trigger = json.loads(stack.history(arns[1])[0]["executionStartedEventDetails"]["input"])
    assert trigger["kind"] == "stratos.run-request" and trigger["spec"]["revision"].startswith("redistill-")
    record = stack.run_record(json.loads(described["output"])["run"]["names"]["run_id"])
    assert record["trigger"] == "schedule"
    assert_states_small_and_identity_kept(run, arns[1], "specs/mahjong.json", record["spec"]["version_id"])


def test_schedule_not_yet_due_starts_nothing(make_stack):
    run = make_stack()
    assert run.upload_and_wait(mahjong_spec())["status"] == "SUCCEEDED"
    report = run.stack.fire_schedule(datetime.now(UTC) + timedelta(days=1))
    assert report["started"] == 0 and report["entries"][0]["due"] is False
    assert len(run.stack.executions()) == 1


def test_a_huge_candidate_grid_stays_in_s3_and_the_state_carries_a_pointer(make_stack, monkeypatch):
    import dataclasses
    import importlib

    catalog = load_catalog()
    clones = [
        dataclasses.replace(i, instance_type=i.instance_type.replace("ml.", "ml.x", 1), family=f"x{i.family}")
        for i in catalog.instances[: 60 - len(catalog.instances)]
    ]
    big = catalog.replace(instances=[*catalog.instances, *clones])
    for name in ("stratos.planner.catalog", "stratos.planner.plan", "stratos.planner.steps"):
        monkeypatch.setattr(importlib.import_module(name), "load_catalog", lambda: big)
    spec = mahjong_spec(**{"constraints.instance_families": None})
    result = plan(validate_spec_document(spec), snapshot_price_table("us-east-1", big), catalog=big)
    assert len(big.instances) == 60 and len(result.context.pairs) >= 40
    grid_bytes = result.selection.candidates * len(json.dumps(result.chosen.as_dict()))
    assert grid_bytes > 100 * SFN_LIMIT  # the whole grid inline would be hundreds of MB

    run = make_stack()
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    [(_, selected, size)] = [o for o in run.outputs(described["executionArn"]) if o[0] == "SelectPlan"]
    pointer = selected["plan"]["frontier"]
    bucket, key = pointer["uri"][5:].split("/", 1)
    stored = run.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(stored) == pointer["bytes"] and json.loads(stored)["candidates"] == result.selection.candidates
    assert selected["plan"]["candidates"] > 1_000_000 and len(selected["plan"]["frontier_top"]) <= 5
    assert size < 32 * 1024


def test_aborted_execution_gets_its_record_closed_by_the_status_change_rule(make_stack):
    run = make_stack(script=Script(statuses=("InProgress",)), TrainingPollSeconds="1")
    stack = run.stack
    stack.upload_spec(mahjong_spec(), key="specs/mahjong.json")
    [arn] = stack.wait_for_executions(1)
    deadline = time.monotonic() + 20
    while not run.sagemaker.training_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.sagemaker.training_requests, "the run never reached StartTrainingJob"
    [started] = run.lambdas.of("validate_spec.app.lambda_handler")
    run_id = started.result["run"]["names"]["run_id"]
    sfn = stack.client("stepfunctions")
    sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by hand")
    assert stack.wait(arn)["status"] == "ABORTED"
    assert stack.run_record(run_id)["status"] == "RUNNING"  # no RecordFailure ran
    execution = sfn.describe_execution(executionArn=arn)
    event = load_event("execution-aborted.json")  # the sample, pointed at this execution
    event["detail"].update(executionArn=arn, stateMachineArn=stack.state_machine_arn, input=execution["input"])
    stack.deliver(event)
    [closed] = run.lambdas.of("record_run.app.abandoned_handler")
    assert closed.result == {"run_id": run_id, "closed": True}
    record = stack.run_record(run_id)
    assert record["status"] == "FAILED" and record["error"]["name"] == "ExecutionAborted"


def test_already_existing_job_model_and_config_count_as_success(make_stack):
    """A re-driven run (its record lost, so the claim passes again) re-finds every resource it names instead of
    creating a second one: CreateTrainingJob's ResourceInUse is caught into the poll loop, and CreateModel /
    CreateEndpointConfig's "already existing" are success."""
    run = make_stack()
    stack = run.stack
    first = run.upload_and_wait(mahjong_spec())
    assert first["status"] == "SUCCEEDED"
    run_id = json.loads(first["output"])["run"]["names"]["run_id"]
    stack.client("dynamodb").delete_item(TableName=stack.output("RunsTable"), Key={"pk": {"S": run_id}})
    [(_, event, _)] = stack.hooks.rules.deliveries
    stack.deliver(event)
    [_, again] = stack.wait_for_executions(2)
    described = stack.wait(again)
    assert described["status"] == "SUCCEEDED", described
    history = stack.history(again)
    failed = [e["taskFailedEventDetails"]["error"] for e in history if "taskFailedEventDetails" in e]
    assert failed == ["SageMaker.ResourceInUseException"]
    assert stack.visited(again)[5:7] == ["StartTrainingJob", "WaitForTraining"]
    assert len(run.sagemaker.training_requests) == 1
    sm = stack.client("sagemaker")
    assert len(sm.list_models()["Models"]) == 1 and len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1
    assert stack.run_record(run_id)["execution_arn"] == again


def test_failed_endpoint_is_recreated(make_stack):
    run = make_stack()
    assert run.upload_and_wait(mahjong_spec())["status"] == "SUCCEEDED"
    run.sagemaker.hold(ENDPOINT, "Failed", polls=1)  # the live endpoint broke since
    second = run.upload_and_wait(mahjong_spec(description="v2"))
    assert second["status"] == "SUCCEEDED", second
    actions = [i.result["action"] for i in run.lambdas.of("deploy.app.lambda_handler") if i.result]
    assert actions == ["created", "recreated"]
    [endpoint] = run.endpoints()
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == json.loads(second["output"])["deployment"]["endpoint_config_name"]


def test_new_data_version_makes_a_task_due(make_stack):
    run = make_stack()
    stack = run.stack
    s3 = stack.client("s3")
    for name in ("train", "eval"):
        s3.put_object(
            Bucket=stack.artifacts_bucket, Key=f"data/tickets/{name}.jsonl", Body=b'{"prompt":"q","completion":"a"}\n'
        )
    spec = mahjong_spec(
        task_id="tickets",
        task={"kind": "extraction", "metric": "exact-match"},
        data={
            "source": "jsonl",
            "format": "prompt-completion",
            "train_uri": f"s3://{stack.artifacts_bucket}/data/tickets/train.jsonl",
            "eval_uri": f"s3://{stack.artifacts_bucket}/data/tickets/eval.jsonl",
        },
        distillation={"mode": "auto"},
        constraints={**mahjong_spec()["constraints"], "budget_usd": 1200},
    )
    first = run.upload_and_wait(spec, key="specs/tickets.json")
    assert first["status"] == "SUCCEEDED", first
    [request] = run.sagemaker.training_requests
    assert {c["ChannelName"] for c in request["InputDataConfig"]} == {"teacher", "student", "train", "eval"}
    assert request["HyperParameters"]["task"] == "jsonl"
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert stack.fire_schedule(tomorrow)["started"] == 0  # nothing changed
    s3.put_object(
        Bucket=stack.artifacts_bucket, Key="data/tickets/train.jsonl", Body=b'{"prompt":"q2","completion":"b"}\n'
    )
    report = stack.fire_schedule(tomorrow + timedelta(hours=1))
    assert report["started"] == 1
    [reason] = report["entries"][0]["reasons"]
    assert reason.startswith(f"on_new_data: s3://{stack.artifacts_bucket}/data/tickets/train.jsonl changed")
    [_, second] = stack.wait_for_executions(2)
    assert stack.wait(second)["status"] == "SUCCEEDED"
