"""The post-deploy latency check through the real state machine under moto: CheckLatency load-tests the endpoint
through sagemaker-runtime (routed by the embedded AWS to what the endpoint's current config serves); a miss of
latency.p50_ms x 1.10 rolls the deployment back and fails the run with the figures. Then the local side on a tiny
real model: the embedded AWS serves an endpoint's model with a local server, and ``stratos loadtest`` measures a
local endpoint.

The scripted account (tests/doubles.py) makes an endpoint config slow by sleeping before it answers: a
deterministic floor, so "slow" is over the limit on any machine, and "fast" (no sleep) far under it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from stratos.loadtest import latency_limit_ms
from stratos.naming import SpecIdentity, run_names
from stratos.pipeline.deploy import REVERT_DEPLOYMENT_CONFIG
from stratos.pipeline.ownership import RUN
from tests.doubles import EndpointScript
from tests.functional.conftest import Run, mahjong_spec

ENDPOINT = "stratos-mahjong-winning-tiles"
#: Seconds the slow config takes to answer: over the mahjong spec's limit of 1,500 ms x 1.10 = 1,650 ms.
SLOW_S = 2.0
#: The load test's cap in the slow runs: one round of requests (4 clients) is sent, then the test stops issuing.
ONE_ROUND = "1"


def _record(run: Run, version_index: int = -1) -> dict[str, Any]:
    """The run record of the spec's ``version_index``-th version (uploaded under specs/mahjong.json)."""
    stack = run.stack
    versions = stack.client("s3").list_object_versions(Bucket=stack.specs_bucket)["Versions"]
    ordered = sorted(versions, key=lambda v: v["LastModified"])
    identity = SpecIdentity(
        bucket=stack.specs_bucket, key="specs/mahjong.json", version_id=ordered[version_index]["VersionId"]
    )
    record = stack.run_record(run_names(identity, "mahjong-winning-tiles").run_id)
    assert record is not None
    return record


def _invoke(run: Run) -> str:
    """What the endpoint answers now, through sagemaker-runtime (the config that serves says its name)."""
    answer = run.stack.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="application/json", Body=json.dumps({"inputs": "hand?"})
    )
    return str(json.loads(answer["Body"].read())[0]["generated_text"])


def test_an_endpoint_within_its_p50_succeeds_with_the_figures_recorded(make_stack):
    run = make_stack()
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED", described
    visited = run.stack.visited(described["executionArn"])
    assert visited[visited.index("CheckLatency") - 1 :][:4] == [
        "EndpointStatus",
        "CheckLatency",
        "LatencyWithinLimit",
        "FinishDeployment",
    ]
    # The load: two one-token probes of the prompt's size and a warm-up, then 4 per client at the spec's
    # concurrency (4), its prompt and output tokens, each prompt starting with its own number.
    calls = run.stack.hooks.runtime.invocations
    assert len(calls) == 3 + 16 and {c.endpoint_name for c in calls} == {ENDPOINT}
    bodies = [json.loads(c.body) for c in calls]
    assert [b["parameters"]["max_new_tokens"] for b in bodies] == [1, 1] + [64] * 17
    assert all(b["parameters"]["details"] and not b["parameters"]["do_sample"] for b in bodies)
    assert sorted(int(b["inputs"].split()[0]) for b in bodies[3:]) == list(range(1, 17))
    record = _record(run)
    check = record["latency"]
    [endpoint] = run.endpoints()
    assert check["passed"] is True and check["endpoint_config_name"] == endpoint["EndpointConfigName"]
    assert check["spec_p50_ms"] == 1500 and check["limit_ms"] == pytest.approx(latency_limit_ms(1500))
    assert check["predicted_p50_ms"] == pytest.approx(record["plan"]["p50_latency_ms"])
    measured = check["measured"]
    assert (measured["requests"], measured["errors"], measured["concurrency"]) == (16, 0, 4)
    assert measured["p50_ms"] < 1000 and measured["tokens_counted"] == "reported"
    assert measured["output_tokens"] == 16 * 64  # the scripted container generates every max_new_tokens
    # The prompt was sized by the endpoint's own count (here one token a word) to the spec's 256 tokens.
    assert measured["prompt_tokens"] == pytest.approx(256, abs=2)
    # The run's summary event carries predicted vs measured.
    [event] = run.run_events()
    detail = event["detail"]
    assert detail["latency_passed"] is True and detail["measured_p50_latency_ms"] == pytest.approx(measured["p50_ms"])
    assert detail["predicted_p50_latency_ms"] == pytest.approx(check["predicted_p50_ms"])
    assert detail["measured_tokens_per_s"] == pytest.approx(measured["tokens_per_s"])


def test_a_new_endpoint_that_misses_its_p50_is_deleted_and_the_run_fails_with_the_figures(make_stack):
    run = make_stack(endpoint_script=EndpointScript(serving_seconds=SLOW_S), LatencyCheckSeconds=ONE_ROUND)
    described = run.upload_and_wait(mahjong_spec())
    assert (described["status"], described["error"]) == ("FAILED", "DeploymentError")
    cause = described["cause"]
    assert "measured p50 2," in cause and "> limit 1,650 ms = latency.p50_ms 1,500 + 10%" in cause
    assert "created by this run (nothing served before it), so it was deleted" in cause
    visited = run.stack.visited(described["executionArn"])
    assert visited[-8:] == [
        "CheckLatency",
        "LatencyWithinLimit",
        "RollBackDeployment",
        "RollbackAction",
        "LatencyLimitMissed",
        "RecordFailure",
        "PublishRunFailed",
        "RunFailed",
    ]
    assert "FinishDeployment" not in visited
    # Nothing is left serving or billing: the endpoint, its config and its model are gone.
    sm = run.stack.client("sagemaker")
    assert run.endpoints() == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    # One round of 4 concurrent requests after the warm-up: they ran at once (the embedded AWS keeps them
    # concurrent), and the figures are in the record beside the error.
    record = _record(run)
    measured = record["latency"]["measured"]
    assert record["latency"]["passed"] is False and measured["requests"] == 4 and measured["stopped_by_time"]
    assert SLOW_S * 1000 <= measured["p50_ms"] < 2 * SLOW_S * 1000 and measured["wall_s"] < 2 * SLOW_S
    assert record["status"] == "FAILED" and record["error"]["name"] == "DeploymentError"
    assert "measured p50" in record["error"]["reason"] and "deleted" in record["error"]["reason"]
    assert record["deployment"]["rolled_back"]["action"] == "deleted"
    [event] = run.run_events()
    assert event["detail-type"] == "Stratos Run Failed" and event["detail"]["latency_passed"] is False
    assert event["detail"]["measured_p50_latency_ms"] == pytest.approx(measured["p50_ms"])


def test_with_latency_check_action_report_a_miss_is_recorded_and_the_endpoint_stays(make_stack):
    # What `stratos run` deploys with on this machine: the same load test and verdict, no rollback.
    run = make_stack(
        endpoint_script=EndpointScript(serving_seconds=SLOW_S),
        LatencyCheckSeconds=ONE_ROUND,
        LatencyCheckAction="report",
    )
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED"
    visited = run.stack.visited(described["executionArn"])
    assert "RollBackDeployment" not in visited and "FinishDeployment" in visited
    record = _record(run)
    check = record["latency"]
    assert (check["passed"], check["keep"], check["action"]) == (False, True, "report")
    assert "> limit 1,650 ms" in check["reason"] and "reported only" in check["reason"]
    assert check["measured"]["p50_ms"] >= SLOW_S * 1000
    [endpoint] = run.endpoints()
    assert endpoint["EndpointStatus"] == "InService"
    [event] = run.run_events()
    assert event["detail-type"] == "Stratos Run Succeeded" and event["detail"]["latency_passed"] is False


def test_an_update_that_misses_its_p50_is_rolled_back_and_the_previous_config_serves_again(make_stack):
    run = make_stack(LatencyCheckSeconds=ONE_ROUND)
    first = run.upload_and_wait(mahjong_spec())
    assert first["status"] == "SUCCEEDED"
    [before] = run.endpoints()
    old_config = before["EndpointConfigName"]
    first_run = _record(run)["run_id"]
    assert _invoke(run) == f"served by {old_config}"

    # From now on every new config is slow; the one serving stays fast.
    script = run.sagemaker.account.script
    script.serving_seconds = SLOW_S
    script.serving_seconds_by_config[old_config] = 0.0
    second = run.upload_and_wait(mahjong_spec(description="a slower student"))
    assert (second["status"], second["error"]) == ("FAILED", "DeploymentError")
    assert "measured p50 2," in second["cause"] and f"returns to config {old_config}" in second["cause"]
    visited = run.stack.visited(second["executionArn"])
    rollback = visited[visited.index("RollBackDeployment") :]
    assert rollback == [
        "RollBackDeployment", "RollbackAction", "ResetRollbackWaits",
        "WaitForRollback", "DescribeRolledBackEndpoint", "RollbackStatus", "CountRollbackPoll", "RollbackPollsLeft",
        "WaitForRollback", "DescribeRolledBackEndpoint", "RollbackStatus",  # InService on the old config
        "LatencyLimitMissed", "RecordFailure", "PublishRunFailed", "RunFailed",
    ]  # fmt: skip

    # The previous config serves again (and answers), the endpoint's tags name its run again.
    [after] = run.endpoints()
    assert (after["EndpointConfigName"], after["EndpointStatus"]) == (old_config, "InService")
    assert _invoke(run) == f"served by {old_config}"
    sm = run.stack.client("sagemaker")
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=after["EndpointArn"])["Tags"]}
    assert tags[RUN] == first_run
    deploy, revert = run.sagemaker.update_requests
    assert revert["EndpointConfigName"] == old_config and revert["DeploymentConfig"] == REVERT_DEPLOYMENT_CONFIG
    new_config = deploy["EndpointConfigName"]
    # The slow config was what the check measured; it is kept (nothing deletes a config mid-update), the old
    # one was never deleted (FinishDeployment did not run).
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {old_config, new_config}
    record = _record(run)
    assert record["latency"]["endpoint_config_name"] == new_config and record["latency"]["passed"] is False
    assert record["deployment"]["rolled_back"] == {
        "action": "reverted",
        "endpoint_name": ENDPOINT,
        "config_name": old_config,
        "failed_config_name": new_config,
        "reason": record["error"]["reason"],
    }


# ---------------------------------------------------------------------------------------------------------------
# The local side, on a tiny real model: the embedded AWS's InvokeEndpoint reaches the endpoint's model, served by a
# local server, and `stratos loadtest` measures a registered local endpoint.


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny deployed student (config-built, a 384-token tokenizer): what a local training job exports."""
    torch = pytest.importorskip("torch")
    from stratos_train.export import save_deployable
    from stratos_train.models import build_tiny_model, train_tiny_tokenizer

    corpus = ["Which tiles complete 123m456p789s1122z?", "Answer: 1z 2z", "4m: no\n5p: 456p"] * 30
    tokenizer = train_tiny_tokenizer(corpus)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_deployable(build_tiny_model(tokenizer, seed=3).to(torch.bfloat16), tokenizer, folder, max_new_tokens=16,
                    card={"title": "tiny"})  # fmt: skip
    return folder


@pytest.mark.timeout(300)
def test_the_embedded_endpoint_is_answered_by_its_model_served_locally(tiny_model, tmp_path, monkeypatch):
    from stratos.aws.artifacts import tar_gz
    from stratos.loadtest import LoadShape, SageMakerRuntimeTransport, run_load_test
    from stratos_cli.local.serving import list_endpoints, pid_alive
    from stratos_cli.local.stack import EmbeddedStack
    from tests.doubles import ScriptedTrainingRunner

    monkeypatch.setenv("STRATOS_HOME", str(tmp_path / "home"))
    files = {p.name: p.read_bytes() for p in tiny_model.iterdir() if p.is_file()}
    runner = ScriptedTrainingRunner(lambda b, k, body: None)
    with EmbeddedStack(parameters={"PriceSource": "snapshot"}, runner=runner) as stack:  # the default account
        s3, sm = stack.client("s3"), stack.client("sagemaker")
        s3.put_object(Bucket=stack.artifacts_bucket, Key="runs/r/training/j/output/model.tar.gz", Body=tar_gz(files))
        url = f"s3://{stack.artifacts_bucket}/runs/r/training/j/output/model.tar.gz"
        sm.create_model(ModelName="tiny-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                        PrimaryContainer={"Image": "x", "ModelDataUrl": url})  # fmt: skip
        variant = {"VariantName": "AllTraffic", "ModelName": "tiny-model", "InstanceType": "ml.c7i.xlarge",
                   "InitialInstanceCount": 1}  # fmt: skip
        sm.create_endpoint_config(EndpointConfigName="tiny-config", ProductionVariants=[variant])
        sm.create_endpoint(EndpointName="tiny", EndpointConfigName="tiny-config")
        transport = SageMakerRuntimeTransport("tiny", region=stack.region, client=stack.client("sagemaker-runtime"))
        with pytest.raises(Exception, match="not in service"):  # Creating: SageMaker routes nothing yet
            transport.invoke({"inputs": "x"})
        while sm.describe_endpoint(EndpointName="tiny")["EndpointStatus"] != "InService":
            time.sleep(0.05)
        shape = LoadShape(concurrency=2, prompt_tokens=48, output_tokens=8, requests=4, max_seconds=120)
        result = run_load_test(transport, shape)
        [server] = stack.hooks.runtime.servers._servers.values()
        assert pid_alive(server.pid) and list_endpoints() == []  # a private server: never in the registry
        with pytest.raises(Exception, match="not found"):
            SageMakerRuntimeTransport("nope", region=stack.region, client=stack.client("sagemaker-runtime")).invoke({})
        bad = transport.client.invoke_endpoint.__self__  # the same client: a container error is a ModelError
        with pytest.raises(Exception, match=r"ModelError.*\(400\)"):
            bad.invoke_endpoint(EndpointName="tiny", ContentType="application/json", Body=b'{"inputs": ""}')
    assert not pid_alive(server.pid)  # the hooks' exit stopped it
    assert result.warmup_error is None and (result.requests, result.errors) == (4, 0), result
    assert result.tokens_counted == "reported" and 4 <= result.output_tokens <= 4 * 8
    # The tiny tokenizer spends more than one token on a word: the prompt was re-sized by its own count.
    assert result.prompt_tokens is not None and abs(result.prompt_tokens - 48) <= 8, result


@pytest.mark.timeout(300)
def test_stratos_loadtest_measures_a_local_endpoint_and_judges_it_by_the_spec(tiny_model, tmp_path, monkeypatch,
                                                                             capsys):  # fmt: skip
    from stratos_cli.cli import main
    from stratos_cli.local.serving import start_endpoint, stop_all

    monkeypatch.setenv("STRATOS_HOME", str(tmp_path / "home"))
    doc = mahjong_spec()
    doc["constraints"]["latency"] = {"p50_ms": 60_000, "prompt_tokens": 32, "output_tokens": 6, "concurrency": 2}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(doc))
    start_endpoint("tiny-local", tiny_model)
    try:
        assert main(["loadtest", "tiny-local", "--spec", str(spec), "--requests", "4", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["passed"] is True and out["p50_limit_ms"] == pytest.approx(66_000)
        assert out["shape"]["concurrency"] == 2 and out["result"]["requests"] == 4 and out["result"]["errors"] == 0
        assert out["result"]["tokens_counted"] == "reported" and out["result"]["tokens_per_s"] > 0
        doc["constraints"]["latency"]["p50_ms"] = 0.001  # no endpoint answers in a microsecond: missed, exit 1
        spec.write_text(json.dumps(doc))
        assert main(["loadtest", "tiny-local", "--spec", str(spec), "--requests", "2"]) == 1
        printed = capsys.readouterr().out
        assert "p50 latency" in printed and "FAIL: measured p50" in printed
        assert main(["loadtest", "tiny-local", "--spec", str(spec), "--concurrency", "3"]) == 2
        assert "--spec sets the load's shape; drop --concurrency" in capsys.readouterr().err
        assert main(["loadtest", "no-such-endpoint", "--concurrency", "1"]) == 1
    finally:
        stop_all()
