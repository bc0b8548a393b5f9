"""Pure orchestration logic: hyperparameters, sizing, deploy decisions, the gate, re-distillation triggers,
settings, error summaries, state-document bounds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from stratos.aws.records import from_dynamo, to_dynamo
from stratos.errors import ConfigurationError, SpecValidationError, TrainingFailedError
from stratos.payloads import SFN_PAYLOAD_LIMIT_BYTES, PlanSummary, TrainingMetrics, size_upper_bound
from stratos.pipeline import models
from stratos.pipeline.deploy import (
    decide,
    deployment_config,
    rollback_alarms,
    serving_timeouts,
)
from stratos.pipeline.gate import CORE_FIELDS, tables, training_metrics, verdict
from stratos.pipeline.models import StateDocument, StateError
from stratos.pipeline.record import error_reason
from stratos.pipeline.settings import Settings
from stratos.pipeline.sweep import due_reasons
from stratos.pipeline.training import channels, hyperparameters, model_source, volume_size_gb
from stratos.pipeline.validate import allowed_data_locations, data_uris, data_versions, deployment_checks
from stratos.planner.catalog import load_catalog
from stratos.spec import RedistillPolicy, validate_spec_document
from tests.conftest import SPECS
from tests.doubles import sample_metrics

MAHJONG = json.loads((SPECS / "mahjong-winning-tiles.json").read_text(encoding="utf-8"))
GSM8K = json.loads((SPECS / "gsm8k.json").read_text(encoding="utf-8"))
PLAN = PlanSummary(
    teacher="qwen2.5-3b-instruct",
    student="smollm2-135m-instruct",
    training_instance="ml.g5.2xlarge",
    serving_instance="ml.g5.xlarge",
    mode="injection",
    expected_accuracy=0.3,
    p50_latency_ms=900,
    training_hours=0.5,
    training_cost_usd=1.5,
    serving_cost_usd=300,
    total_cost_usd=301.5,
    score=0.9,
)
CATALOG = load_catalog()
TEACHER, STUDENT = CATALOG.model(PLAN.teacher), CATALOG.model(PLAN.student)


def _jsonl_spec() -> Any:
    return validate_spec_document(
        {
            **{k: v for k, v in MAHJONG.items() if k not in ("data", "task", "redistill")},
            "task": {"kind": "extraction", "metric": "regex-match", "answer_regex": "ID: (\\d+)"},
            "data": {
                "source": "jsonl",
                "format": "chat",
                "train_uri": "s3://data-bucket/t/train.jsonl",
                "eval_uri": "s3://data-bucket/t/eval.jsonl",
            },
        }
    )


@pytest.mark.parametrize("which", ["mahjong", "gsm8k", "jsonl"])
def test_hyperparameters_are_what_the_training_container_accepts(which):
    config_module = pytest.importorskip("stratos_train.config", reason="the training container package is absent")
    spec = {"mahjong": lambda: validate_spec_document(MAHJONG), "gsm8k": lambda: validate_spec_document(GSM8K)}.get(
        which, _jsonl_spec
    )()
    hp = hyperparameters(spec, PLAN, TEACHER, STUDENT, accelerated=True)
    raw = hp.to_api()
    assert all(isinstance(v, str) for v in raw.values()) and all(len(v) <= 2500 for v in raw.values())
    # What the state machine hands CreateTrainingJob is the payload's JSON as it stands: strings only, no nulls
    # (a JSONL spec has no train_size / eval_size).
    assert json.loads(hp.model_dump_json()) == raw
    config = config_module.parse_hyperparameters(raw)  # the container's own parser, every value a string
    assert config.teacher == "channel:teacher" and config.student == "channel:student"
    assert (config.teacher_id, config.student_id) == ("qwen2.5-3b-instruct", "smollm2-135m-instruct")
    assert config.mode == spec.distillation.mode.value
    assert config.max_new_tokens == spec.constraints.latency.output_tokens
    assert config.bf16 is True and config.lora is False and config.teacher_rationales is True
    if which == "jsonl":
        assert config.task == "jsonl"
        assert config.task_options == {"format": "chat", "metric": "regex-match", "answer_regex": "ID: (\\d+)"}
        names = [c.ChannelName for c in channels(spec, TEACHER, STUDENT, "s3://models/")]
        assert names == ["teacher", "student", "train", "eval"]
    elif which == "gsm8k":
        assert config.task == "gsm8k"
        names = [c.ChannelName for c in channels(spec, TEACHER, STUDENT, "s3://models/")]
        assert names == ["teacher", "student", "data"]
    else:
        assert (config.task, config.train_size, config.eval_size, config.seed) == (
            "mahjong-winning-tiles",
            2000,
            200,
            7,
        )


def test_large_students_train_lora_and_cpu_instances_skip_bf16():
    big = CATALOG.model("qwen2.5-7b-instruct")
    hp = hyperparameters(validate_spec_document(MAHJONG), PLAN, CATALOG.model("qwen2.5-72b-instruct"), big, False)
    assert (hp.lora, hp.bf16) == ("true", "false")


def test_a_pruned_student_trains_from_its_base_models_folder_pruned_at_load():
    """``smollm2-135m-instruct-l15`` is not staged on its own: the student channel is its base's folder and the
    container's source prunes it (``channel:student@layers=15``); the catalog id goes along for the model card."""
    config_module = pytest.importorskip("stratos_train.config", reason="the training container package is absent")
    teacher, pruned = CATALOG.model("smollm2-135m-instruct"), CATALOG.model("smollm2-135m-instruct-l15")
    plan = PLAN.model_copy(update={"teacher": teacher.id, "student": pruned.id, "mode": "alignment"})
    spec = validate_spec_document(MAHJONG)
    assert (model_source("student", pruned), model_source("teacher", teacher)) == (
        "channel:student@layers=15",
        "channel:teacher",
    )
    uris = {c.ChannelName: c.DataSource.S3DataSource.S3Uri for c in channels(spec, teacher, pruned, "s3://b/models/")}
    assert uris == {
        "teacher": "s3://b/models/smollm2-135m-instruct/",
        "student": "s3://b/models/smollm2-135m-instruct/",
    }
    config = config_module.parse_hyperparameters(
        hyperparameters(spec, plan, teacher, pruned, accelerated=True).to_api()
    )
    assert (config.student, config.student_id, config.teacher_id) == (
        "channel:student@layers=15",
        "smollm2-135m-instruct-l15",
        "smollm2-135m-instruct",
    )
    assert config.teacher_rationales is False  # the planned mode is alignment


def test_volume_grows_with_the_models_and_has_a_floor():
    small = volume_size_gb(135_000_000, 135_000_000, lora=False)
    assert small == 30
    big = volume_size_gb(70_000_000_000, 7_000_000_000, lora=True)
    assert big > 500 and big <= 16_384
    assert volume_size_gb(70_000_000_000, 7_000_000_000, lora=False) > big


def test_serving_timeouts_sized_to_the_model_and_clamped():
    assert serving_timeouts(134_515_008) == (71, 126)
    assert serving_timeouts(7_000_000_000) == (620, 400)
    assert serving_timeouts(400_000_000_000) == (3600, 3600)


@pytest.mark.parametrize(
    ("endpoint", "action"),
    [
        (None, "create"),
        ({"EndpointStatus": "InService", "EndpointConfigName": "old"}, "update"),
        ({"EndpointStatus": "InService", "EndpointConfigName": "ours"}, "already"),
        ({"EndpointStatus": "Creating", "EndpointConfigName": "ours"}, "already"),
        ({"EndpointStatus": "Updating", "EndpointConfigName": "old"}, "busy"),
        (
            {
                "EndpointStatus": "Updating",
                "EndpointConfigName": "old",
                "PendingDeploymentSummary": {"EndpointConfigName": "ours"},
            },
            "already",
        ),
        ({"EndpointStatus": "Creating", "EndpointConfigName": "old"}, "busy"),
        ({"EndpointStatus": "RollingBack", "EndpointConfigName": "old"}, "busy"),
        ({"EndpointStatus": "SystemUpdating", "EndpointConfigName": "old"}, "busy"),
        ({"EndpointStatus": "Failed", "EndpointConfigName": "old"}, "recreate"),
        ({"EndpointStatus": "UpdateRollbackFailed", "EndpointConfigName": "old"}, "update"),
    ],
)
def test_deploy_describes_first_then_decides(endpoint, action):
    assert decide(endpoint, "ours") == action


def test_blue_green_config_rolls_back_on_alarms():
    one = deployment_config("ep", 1)
    assert one["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert one["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "stratos-ep-5xx"},
        {"AlarmName": "stratos-ep-p50-latency"},
    ]
    canary = deployment_config("ep", 3)["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert canary["Type"] == "CANARY" and canary["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    errors, latency = rollback_alarms("ep", p50_ms=1500)
    assert errors["MetricName"] == "Invocation5XXErrors" and errors["Threshold"] == 0
    assert latency["MetricName"] == "ModelLatency" and latency["Threshold"] == 3_000_000.0  # microseconds


def test_metrics_json_maps_onto_training_metrics():
    raw = sample_metrics(accuracy=0.42)
    metrics = training_metrics(raw)
    assert metrics.student_after_accuracy == 0.42 and metrics.mode == "injection"
    assert metrics.teacher_accuracy == raw["teacher_accuracy"] and metrics.train_tokens == raw["train_tokens"]
    assert metrics.extra["mode_evidence.coverage"] == raw["mode_evidence"]["coverage"]
    assert list(metrics.extra)[:3] == ["teacher_partial", "student_before_partial", "student_after_partial"]
    assert len(metrics.extra) <= 32 and len(json.dumps(metrics.to_state())) < TrainingMetrics.MAX_BYTES
    many = {**raw, **{f"m{i}": float(i) for i in range(100)}}
    assert len(training_metrics(many).extra) == 32
    with pytest.raises(TrainingFailedError, match="student_after_accuracy"):
        training_metrics({k: v for k, v in raw.items() if k != "student_after_accuracy"})
    with pytest.raises(TrainingFailedError, match="metrics contract"):
        training_metrics({**raw, "student_after_accuracy": 1.5})
    with pytest.raises(TrainingFailedError, match=r"metrics contract: teacher_strata\.1 wait"):
        training_metrics({**raw, "teacher_strata": {"1 wait": {"n": "many"}}})  # a known key, the wrong shape


def test_container_metrics_keys_cover_the_training_metrics_fields():
    from stratos_contract.metrics import JobMetrics  # metrics.json as the container writes it

    assert set(CORE_FIELDS) <= set(JobMetrics.model_fields)
    for field in ("mode", "mode_reason", "teacher_accuracy", "student_before_accuracy", "student_after_accuracy",
                  "eval_examples", "train_examples", "train_tokens", "final_loss"):  # fmt: skip
        assert field in JobMetrics.model_fields, field


def test_gate_verdicts():
    m = training_metrics(sample_metrics(accuracy=0.42))
    assert verdict(m, 0.25, None, 0.01)[0] is True
    passed, reason = verdict(m, 0.5, None, 0.01)
    assert not passed and "below constraints.min_accuracy 0.5000" in reason
    passed, reason = verdict(m, 0.25, ("old-run", 0.45), 0.01)
    assert not passed and "worse than the serving model's 0.4500 (run old-run)" in reason
    assert verdict(m, 0.25, ("old-run", 0.425), 0.01)[0] is True
    empty = m.model_copy(update={"eval_examples": 0})
    assert verdict(empty, 0.0, None, 0.01) == (False, "no evaluation example was scored")


def test_redistill_triggers():
    policy = RedistillPolicy(max_age_days=30, price_change_fraction=0.2, on_new_data=True)
    then = datetime(2026, 11, 1, tzinfo=UTC)
    keep = {"ml.g5.xlarge/Hosting": 1.0}
    assert due_reasons(policy, then, then + timedelta(days=29), keep, keep, {}, {}) == []
    [age] = due_reasons(policy, then, then + timedelta(days=30), keep, keep, {}, {})
    assert age.startswith("max_age_days: last successful run is 30 days old")
    [price] = due_reasons(policy, then, then, keep, {"ml.g5.xlarge/Hosting": 1.25}, {}, {})
    assert "moved 25.0%" in price
    assert due_reasons(policy, then, then, keep, {"ml.g5.xlarge/Hosting": 1.19}, {}, {}) == []
    assert due_reasons(policy, then, then, {"x/Hosting": None}, {"x/Hosting": 5.0}, {}, {}) == []  # unknown then
    [data] = due_reasons(policy, then, then, {}, {}, {"s3://b/t.jsonl": "v1"}, {"s3://b/t.jsonl": "v2"})
    assert data == "on_new_data: s3://b/t.jsonl changed (v1 -> v2)"
    off = RedistillPolicy(max_age_days=None, price_change_fraction=None, on_new_data=False)
    assert (
        due_reasons(off, then, then + timedelta(days=999), keep, {"ml.g5.xlarge/Hosting": 9.0}, {"a": "1"}, {"a": "2"})
        == []
    )


def test_settings_name_the_missing_variable():
    settings = Settings.from_env({"STRATOS_ARTIFACTS_BUCKET": "art", "STRATOS_INSTANCE_ALLOWLIST": "ml.a.x, ml.b.y"})
    assert settings.instance_allowlist == ("ml.a.x", "ml.b.y") and settings.require("artifacts_bucket") == "art"
    with pytest.raises(ConfigurationError, match="STRATOS_RUNS_TABLE is not set"):
        settings.require("runs_table")
    with pytest.raises(ConfigurationError, match="STRATOS_PRICE_SOURCE"):
        Settings.from_env({"STRATOS_PRICE_SOURCE": "cheap"})
    assert Settings.from_env({"STRATOS_MODELS_S3_URI": "s3://b/models"}).models_s3_uri == "s3://b/models/"


def test_error_reason_reads_lambda_causes():
    lambda_cause = json.dumps({"errorType": "SpecValidationError", "errorMessage": "budget_usd: bad", "stackTrace": []})
    assert error_reason(StateError(Error="SpecValidationError", Cause=lambda_cause)) == "budget_usd: bad"
    assert error_reason(StateError(Error="TrainingFailedError", Cause="job x failed")) == "job x failed"
    assert error_reason(StateError(Error="States.Timeout")) == "States.Timeout"
    long = StateError(Error="X", Cause="y" * 40_000)
    assert len(long.Cause) == models.MAX_CAUSE_CHARS


def test_deployment_checks_name_the_field():
    spec = validate_spec_document(MAHJONG)
    deployment_checks(spec, Settings(region="us-east-1"), "s3://b/specs/x.json")
    with pytest.raises(SpecValidationError, match="constraints.region.*runs in eu-west-1"):
        deployment_checks(spec, Settings(region="eu-west-1"), "s3://b/specs/x.json")
    # One limit for validate, the schema and the pipeline: notes a hyperparameter cannot carry are invalid.
    with pytest.raises(SpecValidationError, match=r"distillation.domain_notes: .*at most 2500 characters"):
        validate_spec_document({**MAHJONG, "distillation": {"mode": "auto", "domain_notes": "x" * 2501}})
    assert data_uris(validate_spec_document(GSM8K))[0].endswith("/train.jsonl")
    assert data_uris(spec) == []


def test_dynamodb_values_round_trip():
    value = {"a": 0.1, "b": [1, 2.5, {"c": None}], "d": "x", "e": True}
    stored = to_dynamo(value)
    assert stored["a"] == Decimal("0.1") and from_dynamo(stored) == value


def test_state_document_fits_step_functions_with_room():
    total = 0
    for name, field in StateDocument.model_fields.items():
        if name == "trigger":  # the raw event, capped at MAX_TRIGGER_BYTES and dropped by ValidateSpec
            continue
        total += size_upper_bound(field.annotation, tuple(field.metadata)) + len(name) + 4
    assert total + models.MAX_TRIGGER_BYTES < SFN_PAYLOAD_LIMIT_BYTES
    for model in (models.Timing, models.QuotaHit, models.FallbackInfo, models.TrainingRequest, models.RunSummary):
        assert size_upper_bound(model) <= model.MAX_BYTES, model.__name__


def test_outputs_never_go_under_the_watched_prefix():
    from stratos.aws.artifacts import ArtifactStore, OutputLocationError

    with pytest.raises(OutputLocationError, match="specs/"):
        ArtifactStore("bucket", s3_client=object()).put("specs/x.json", b"{}")


def test_sample_step_events_parse():
    from stratos.errors import EventShapeError
    from stratos.pipeline.models import PlannedState, TriggeredState
    from stratos.pipeline.state import parse_step_event
    from tests.conftest import load_event

    event = load_event("step-validate-spec.json")
    step = parse_step_event(event, TriggeredState)
    assert step.state.trigger and step.state.timing.training_poll_seconds == 300
    # A step reached out of order: the keys it needs are required by its state model, and named when absent.
    with pytest.raises(EventShapeError, match=r"state\.run: .*state\.plan: ") as caught:
        parse_step_event(event, PlannedState)
    assert {e.path for e in caught.value.errors} == {"state.run", "state.plan"}
    aborted = load_event("execution-aborted.json")
    assert aborted["detail"]["status"] == "ABORTED" and json.loads(aborted["detail"]["input"])["source"] == "aws.s3"


def test_per_stratum_tables_for_the_run_record() -> None:
    row = {"correct": 1, "n": 2, "accuracy": 0.5, "ignored": True}
    raw = {
        "student_after_strata": {"1 wait, honours": row},
        "eval_sets": {
            "random-tenpai": {"student_after": {"accuracy": 0.5, "partial": 0.6, "examples": 2, "correct": 1}}
        },
        "injection_rounds": [
            {"round": 1, "examples": 8, "train_tokens": 400, "probe": {"a": row}, "probe_accuracy": 0.5, "seconds": 3.2}
        ],
    }
    out = tables(raw)
    assert out["strata"] == {"1 wait, honours": {"correct": 1, "n": 2, "accuracy": 0.5}}
    assert out["eval_sets"]["random-tenpai"]["student_after"]["correct"] == 1
    assert out["injection_rounds"][0]["probe"]["a"]["accuracy"] == 0.5
    assert from_dynamo(to_dynamo(out)) == out  # storable in the runs table as is
    assert tables({}) == {}
    with pytest.raises(TrainingFailedError, match="per-stratum table"):
        tables({"injection_rounds": [{"round": 0}]})


def test_the_job_hyperparameters_are_checked_by_the_contract_when_built() -> None:
    from pydantic import ValidationError

    from stratos.pipeline.models import Hyperparameters

    base = {"task": "gsm8k", "seed": "0", "teacher": "channel:teacher", "student": "channel:student"}
    wire = {**base, "mode": "auto", "max_new_tokens": "64", "bf16": "true", "lora": "false"}
    Hyperparameters.model_validate({**wire, "teacher_rationales": "false"})
    with pytest.raises(ValidationError, match="max_new_tokens"):  # in range for the wire shape, not for the job
        Hyperparameters.model_validate({**wire, "teacher_rationales": "false", "max_new_tokens": "99999"})


STACK = Settings(
    region="us-east-1", specs_bucket="st-specs", artifacts_bucket="st-artifacts", data_buckets=("team-data",)
)


def _jsonl(train: str, eval_: str = "s3://team-data/t/eval.jsonl") -> Any:
    doc = {
        **MAHJONG,
        "task": {"kind": "open-qa", "metric": "exact-match"},
        "data": {"source": "jsonl", "format": "chat", "train_uri": train, "eval_uri": eval_},
    }
    return validate_spec_document(doc)


@pytest.mark.parametrize(
    "uri",
    ["s3://st-artifacts/data/ids/train.jsonl", "s3://team-data/ids/train.jsonl", "s3://team-data/x.jsonl"],
)
def test_data_inside_the_stacks_locations_passes(uri):
    deployment_checks(_jsonl(uri), STACK, "s3://st-specs/specs/x.json")


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3://someone-elses-prod-data/pii/customers.jsonl", "not one this stack reads data from.*DataBucketName"),
        ("s3://st-artifacts/runs/run-1/spec.json", "belongs to Stratos; data may only live under"),
        ("s3://st-artifacts/models/x/config.json", "belongs to Stratos"),
        ("s3://st-specs/specs/other.json", "belongs to Stratos"),
        ("s3://st-artifacts/database/x.jsonl", "belongs to Stratos"),
    ],
)
def test_data_outside_the_stacks_locations_is_refused_naming_the_field(uri, reason):
    with pytest.raises(SpecValidationError, match=rf"data.train_uri: .*{reason}") as caught:
        deployment_checks(_jsonl(uri), STACK, "s3://st-specs/specs/x.json")
    assert [e.path for e in caught.value.errors] == ["data.train_uri"]


def test_a_data_bucket_parameter_naming_stratos_own_bucket_never_opens_runs_or_specs():
    stack = STACK.model_copy(update={"data_buckets": ("st-artifacts", "st-specs")})
    assert [str(x) for x in allowed_data_locations(stack)] == [
        "s3://st-artifacts/data/",
        "s3://st-artifacts/",
        "s3://st-specs/",
    ]
    for uri in ("s3://st-artifacts/runs/r/spec.json", "s3://st-specs/specs/a.json"):
        with pytest.raises(SpecValidationError, match="data.train_uri"):
            deployment_checks(_jsonl(uri), stack, "s3://st-specs/specs/x.json")


class _Heads:
    def __init__(self, denied: set[str], missing: set[str]) -> None:
        self.denied, self.missing = denied, missing

    def object_version(self, uri: str) -> str | None:
        from stratos.errors import DataAccessDeniedError

        if uri in self.denied:
            raise DataAccessDeniedError(f"reading {uri} was denied")
        return None if uri in self.missing else "v1"


def test_data_versions_report_denied_and_missing_objects_by_field():
    spec = _jsonl("s3://team-data/t/train.jsonl")
    assert data_versions(spec, _Heads(set(), set()), "src") == {
        "s3://team-data/t/train.jsonl": "v1",
        "s3://team-data/t/eval.jsonl": "v1",
    }
    heads = _Heads({"s3://team-data/t/train.jsonl"}, {"s3://team-data/t/eval.jsonl"})
    with pytest.raises(SpecValidationError) as caught:
        data_versions(spec, heads, "src")
    assert [(e.path, e.reason) for e in caught.value.errors] == [
        ("data.train_uri", "access denied: this stack's roles may not read it (S3 403)"),
        ("data.eval_uri", "no such object in S3"),
    ]


def test_object_version_tells_access_denied_from_a_missing_object(monkeypatch):
    """HeadObject 403 is DataAccessDeniedError (never "no such object"); 404 is None; a version is returned."""
    import boto3
    from botocore.config import Config
    from botocore.stub import Stubber

    from stratos.aws.artifacts import ArtifactStore
    from stratos.errors import DataAccessDeniedError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = boto3.client("s3", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    store = ArtifactStore("st-artifacts", s3)
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_response("head_object", {"VersionId": "v7", "ETag": '"e"'})
        with pytest.raises(DataAccessDeniedError, match=r"reading s3://team-data/a.jsonl was denied \(S3 403\)"):
            store.object_version("s3://team-data/a.jsonl")
        assert store.object_version("s3://team-data/b.jsonl") is None
        assert store.object_version("s3://team-data/c.jsonl") == "v7"


def test_endpoint_owner_rules():
    """check_endpoint_owner: stack first, then task (unless listed), then spec-version order (same second = same
    age; an unknown time never blocks)."""
    from stratos.errors import DeploymentSupersededError, EndpointOwnershipError
    from stratos.pipeline.ownership import Owner, check_endpoint_owner

    t = datetime(2026, 12, 4, 9, 0, 0, 500_000, tzinfo=UTC)
    mine = {"stack": "st", "task_id": "a", "replaces_tasks": (), "spec_modified_at": t}
    check_endpoint_owner("ep", Owner("st", "a", "r1", "2026-12-04T09:00:00+00:00"), **mine)  # same second
    check_endpoint_owner("ep", Owner("st", "a", "r1", ""), **mine)  # tag absent: no order to keep
    check_endpoint_owner(
        "ep", Owner("st", "a", "r1", "2099-01-01T00:00:00+00:00"), **{**mine, "spec_modified_at": None}
    )
    with pytest.raises(DeploymentSupersededError, match="serves run r1 from a newer version of task 'a'"):
        check_endpoint_owner("ep", Owner("st", "a", "r1", "2026-12-04T09:00:01+00:00"), **mine)
    with pytest.raises(EndpointOwnershipError, match="ep is not managed by Stratos"):
        check_endpoint_owner("ep", Owner("", "", "", ""), **mine)
    with pytest.raises(EndpointOwnershipError, match="ep is stack 'prod', task 'a'"):
        check_endpoint_owner("ep", Owner("prod", "a", "r", ""), **mine)
    with pytest.raises(EndpointOwnershipError, match="serves task 'b'"):
        check_endpoint_owner("ep", Owner("st", "b", "r", ""), **mine)
    # Listed: task b's endpoint may be taken over, whatever its spec time (another task's versions do not order).
    check_endpoint_owner("ep", Owner("st", "b", "r", "2099-01-01T00:00:00+00:00"), **{**mine, "replaces_tasks": ["b"]})


def _plan_like(changes: dict[str, Any]) -> PlanSummary:
    """PLAN with ``changes``, validated (so ``mode`` is the enum and ``parallelism`` the model)."""
    return PlanSummary.model_validate({**PLAN.model_dump(), **changes})


def _prepared(plan_summary: PlanSummary, spec_doc: dict[str, Any] = GSM8K) -> models.TrainingRequest:
    """PrepareTrainingJob's request for ``plan_summary`` (pure: no AWS call)."""
    from stratos.naming import SpecIdentity, run_names
    from stratos.payloads import PlanRef, RunContext, S3Pointer
    from stratos.pipeline.state import names_for
    from stratos.pipeline.training import training_request

    ident = SpecIdentity(bucket="stratos-specs-1", key="specs/gsm8k.json", version_id="v1", etag="e")
    names = run_names(ident, "gsm8k")
    pointer = S3Pointer(uri=f"s3://stratos-artifacts/runs/{names.run_id}/spec.json", bytes=1, sha256="0" * 64)
    run = RunContext(
        spec=ident,
        names=names,
        task_id="gsm8k",
        region="us-west-2",
        mode_requested="alignment",
        trigger="upload",
        started_at=datetime(2026, 12, 4, tzinfo=UTC),
        spec_copy=pointer,
    )
    ref = PlanRef(
        plan=plan_summary,
        max_runtime_seconds=3600,
        frontier_top=[],
        frontier=pointer,
        candidates=1,
        rejected={},
        baselines={},
    )
    spec = validate_spec_document(spec_doc)
    return training_request(run, spec, ref, names_for(run, spec, 0), "s3://stratos-artifacts/models/", "st")


def test_training_request_runs_the_plans_parallelism_on_its_nodes():
    """InstanceCount is the plan's nodes; the plan itself travels as the `parallelism` hyperparameter (one JSON
    string under SageMaker's 2,500 characters) that the container's own parser reads back unchanged; the
    generation batch the plan's memory estimate assumed becomes eval_batch_size."""
    from stratos.planner import estimators as est
    from stratos_contract.hyperparameters import (
        HYPERPARAMETER_VALUE_MAX,
        TrainingHyperparameters,
        parse_hyperparameters,
    )

    student, teacher, instance = (
        CATALOG.model("qwen2.5-7b-instruct"),
        CATALOG.model("qwen2.5-14b-instruct"),
        "ml.g5.48xlarge",
    )
    lat = GSM8K["constraints"]["latency"]
    workload = est.TrainingWorkload(2000, 250, lat["prompt_tokens"], lat["output_tokens"])
    layout = est.choose_parallelism(student, teacher, "alignment", CATALOG.instance(instance), workload)
    assert layout is not None and layout.nodes > 1  # this pair does not fit one 8 x 24 GB node
    sharded = _plan_like(
        {
            "teacher": teacher.id,
            "student": student.id,
            "training_instance": instance,
            "mode": "alignment",
            "parallelism": layout,
        }
    )
    request = _prepared(sharded)
    assert request.instance_count == layout.nodes
    raw = request.hyperparameters.to_api()
    assert 0 < len(raw["parallelism"]) <= HYPERPARAMETER_VALUE_MAX
    decoded = parse_hyperparameters(raw, TrainingHyperparameters)
    assert decoded.parallelism == layout
    generation = est.plan_generation_batch(student, teacher, "alignment", workload, layout, CATALOG.instance(instance))
    assert decoded.eval_batch_size == generation
    assert request.to_state()["hyperparameters"]["parallelism"] == raw["parallelism"]  # what the ASL passes on
    # A plan made before the planner chose a parallelism runs on one instance with the container's defaults.
    plain = _prepared(_plan_like({"mode": "alignment", "teacher": "qwen2.5-7b-instruct"}))
    assert plain.instance_count == 1
    assert (
        "parallelism" not in plain.hyperparameters.to_api() and "eval_batch_size" not in plain.hyperparameters.to_api()
    )


def test_an_external_teacher_travels_as_its_source_with_its_prices_and_no_teacher_channel():
    from stratos_contract.hyperparameters import TrainingHyperparameters, parse_hyperparameters

    doc = {
        **GSM8K,
        "distillation": {"mode": "auto"},
        "candidates": {
            "students": ["qwen2.5-0.5b-instruct"],
            "external_teachers": [
                {"kind": "bedrock", "model_id": "amazon.nova-lite-v1:0"},
                {
                    "kind": "sagemaker-endpoint",
                    "endpoint_name": "qwen-teacher",
                    "serves": "qwen2.5-7b-instruct",
                    "top_logprobs": 5,
                    "prompt_format": "chat",
                },
            ],
        },
    }
    bedrock = _prepared(
        _plan_like(
            {"teacher": "bedrock:amazon.nova-lite-v1:0", "mode": "injection", "student": "qwen2.5-0.5b-instruct"}
        ),
        doc,
    )
    hp = parse_hyperparameters(bedrock.hyperparameters.to_api(), TrainingHyperparameters)
    assert hp.teacher == "bedrock:amazon.nova-lite-v1:0" and hp.teacher_rationales
    assert (hp.teacher_usd_per_1k_input, hp.teacher_usd_per_1k_output) == (0.00006, 0.00024)
    assert [c.ChannelName for c in bedrock.input_data_config] == ["student", "data"]
    # A plan priced at the live Pricing API's token prices: the job counts its spending at those.
    live = _prepared(
        _plan_like(
            {
                "teacher": "bedrock:amazon.nova-lite-v1:0",
                "mode": "injection",
                "student": "qwen2.5-0.5b-instruct",
                "teacher_usd_per_1k_input": 0.0001,
                "teacher_usd_per_1k_output": 0.0004,
            }
        ),
        doc,
    )
    hp_live = parse_hyperparameters(live.hyperparameters.to_api(), TrainingHyperparameters)
    assert (hp_live.teacher_usd_per_1k_input, hp_live.teacher_usd_per_1k_output) == (0.0001, 0.0004)
    assert {t.Key: t.Value for t in bedrock.tags}["stratos:teacher"] == "bedrock:amazon.nova-lite-v1:0"
    endpoint = _prepared(
        _plan_like(
            {"teacher": "sagemaker-endpoint:qwen-teacher", "mode": "injection", "student": "qwen2.5-0.5b-instruct"}
        ),
        doc,
    )
    hp = parse_hyperparameters(endpoint.hyperparameters.to_api(), TrainingHyperparameters)
    # auto: the job may align to the endpoint's top-5 (its mode rule decides, after its token check)
    assert hp.teacher == "sagemaker-endpoint:qwen-teacher" and hp.teacher_topk == 5 and hp.mode == "auto"
    assert hp.teacher_prompt_format == "chat" and hp.teacher_usd_per_1k_input == 0.0
    assert "teacher" not in [c.ChannelName for c in endpoint.input_data_config]
    forced = {**doc, "distillation": {"mode": "injection"}}
    plan = _plan_like(
        {"teacher": "sagemaker-endpoint:qwen-teacher", "mode": "injection", "student": "qwen2.5-0.5b-instruct"}
    )
    hp = parse_hyperparameters(_prepared(plan, forced).hyperparameters.to_api(), TrainingHyperparameters)
    assert hp.teacher_topk == 0 and hp.mode == "injection"  # forced injection asks for text only


def test_training_request_refuses_a_parallelism_the_catalog_instance_cannot_honour():
    from stratos_contract.parallelism import ParallelismPlan

    drifted = _plan_like(
        {
            "mode": "alignment",
            "teacher": "qwen2.5-7b-instruct",
            "training_instance": "ml.g5.48xlarge",
            "parallelism": ParallelismPlan(strategy="ddp", devices_per_node=4),
        }
    )
    with pytest.raises(SpecValidationError) as caught:
        _prepared(drifted)
    assert caught.value.errors[0].path == "plan.parallelism.devices_per_node"
    assert "8 device(s)" in caught.value.errors[0].reason


# --------------------------------------------------------------------------------------------------------
# Managed spot: the job request and the measured saving.


def test_an_on_demand_plan_sends_no_spot_fields():
    """SageMaker refuses MaxWaitTimeInSeconds without EnableManagedSpotTraining: an on-demand job's condition has
    no such key at all (not a null)."""
    request = _prepared(PLAN)
    assert request.enable_managed_spot_training is False
    assert request.to_state()["stopping_condition"] == {"MaxRuntimeInSeconds": 3600}


def test_a_spot_plan_sets_managed_spot_and_a_wait_that_covers_the_runtime():
    from stratos.pipeline.training import SPOT_MIN_WAIT_ALLOWANCE_SECONDS
    from stratos.planner.estimators import spot_overhead_fraction

    request = _prepared(_plan_like({"spot": True}))  # gsm8k.json: max_training_hours 12, runtime 3600 s
    assert request.enable_managed_spot_training is True
    condition = request.to_state()["stopping_condition"]
    overhead = spot_overhead_fraction(CATALOG.instance("ml.g5.2xlarge").spot.interruptions_per_hour)
    assert overhead * 3600 < SPOT_MIN_WAIT_ALLOWANCE_SECONDS  # so the one-hour floor applies
    assert condition == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 3600 + SPOT_MIN_WAIT_ALLOWANCE_SECONDS}


@pytest.mark.parametrize(
    ("runtime", "overhead", "max_hours", "wait"),
    [
        (3600, 0.01, 12, 7200),  # the one-hour floor
        (36_000, 0.2, 24, 43_200),  # 20 % of ten hours is more than the floor
        (36_000, 0.2, 11, 39_600),  # ... capped by the spec's wall-clock limit (11 h)
        (21_600, 0.01, 6, 21_600),  # the runtime is the whole limit: no room to wait, never below the runtime
        (60, 0.0, 0.01, 60),  # a limit below SageMaker's least runtime: the wait still covers the runtime
        (28 * 24 * 3600, 0.5, 28 * 24, 28 * 24 * 3600),  # 28 days at most
    ],
)
def test_spot_wait_is_runtime_plus_allowance_capped_by_max_training_hours(runtime, overhead, max_hours, wait):
    from stratos.pipeline.training import stopping_condition

    condition = stopping_condition(runtime, True, overhead, max_hours)
    assert (condition.MaxRuntimeInSeconds, condition.MaxWaitTimeInSeconds) == (runtime, wait)
    assert stopping_condition(runtime, False, overhead, max_hours).model_dump() == {"MaxRuntimeInSeconds": runtime}


def test_the_request_model_refuses_a_wait_without_spot_and_spot_without_a_wait():
    from pydantic import ValidationError

    request = _prepared(PLAN).model_dump(mode="json")
    with pytest.raises(ValidationError, match="MaxWaitTimeInSeconds is required for a managed spot job"):
        models.TrainingRequest.model_validate({**request, "enable_managed_spot_training": True})
    waits = {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    with pytest.raises(ValidationError, match="refused otherwise"):
        models.TrainingRequest.model_validate({**request, "stopping_condition": waits})
    with pytest.raises(ValidationError, match="SageMaker requires the wait to cover the runtime"):
        models.StoppingCondition(MaxRuntimeInSeconds=7200, MaxWaitTimeInSeconds=3600)


def _ref(plan_summary: PlanSummary) -> Any:
    from stratos.payloads import PlanRef, S3Pointer

    pointer = S3Pointer(uri="s3://stratos-artifacts/runs/r1/plan/frontier.json", bytes=1, sha256="0" * 64)
    return PlanRef(
        plan=plan_summary,
        max_runtime_seconds=3600,
        frontier_top=[],
        frontier=pointer,
        candidates=1,
        rejected={},
        baselines={},
    )


def test_actual_cost_bills_billable_seconds_at_the_on_demand_rate_and_records_the_spot_saving():
    """SageMaker's savings = 1 - billable / training seconds; the cost is the billable time at the on-demand rate
    (the plan's on_demand_usd_per_hour, not its spot-discounted cost / hours)."""
    from stratos.pipeline.gate import actual_training

    spot = _plan_like({"spot": True, "training_cost_usd": 0.6, "on_demand_usd_per_hour": 3.0})
    actual = actual_training(
        {"TrainingTimeInSeconds": 3600, "BillableTimeInSeconds": 1080, "EnableManagedSpotTraining": True}, _ref(spot)
    )
    assert actual.spot is True
    assert actual.spot_saving_fraction == pytest.approx(0.7)
    assert actual.training_cost_usd == pytest.approx(1080 / 3600 * 3.0)
    assert actual.spot_saving_usd == pytest.approx((3600 - 1080) / 3600 * 3.0)
    # On-demand: no saving figures; a plan from before on_demand_usd_per_hour is priced at its cost / hours.
    on_demand = actual_training({"TrainingTimeInSeconds": 1800, "BillableTimeInSeconds": 1800}, _ref(PLAN))
    assert (on_demand.spot, on_demand.spot_saving_fraction, on_demand.spot_saving_usd) == (False, None, None)
    assert on_demand.training_usd_per_hour == pytest.approx(PLAN.training_cost_usd / PLAN.training_hours)
    assert on_demand.training_cost_usd == pytest.approx(0.5 * 3.0)
