"""Static checks of statemachine/distillation.asl.json: wiring, no ARNs, the error contract with errors.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stratos.errors import RETRYABLE_ERRORS, TERMINAL_ERRORS
from stratos_cli.local.template import load_template
from tests.conftest import REPO

ASL_PATH = REPO / "statemachine" / "distillation.asl.json"
ASL: dict[str, Any] = json.loads(ASL_PATH.read_text(encoding="utf-8"))
STATES: dict[str, Any] = ASL["States"]
TASKS = {name: s for name, s in STATES.items() if s["Type"] == "Task"}
LAMBDA_TASKS = {name: s for name, s in TASKS.items() if s["Resource"].startswith("${")}


def _targets(state: dict[str, Any]) -> list[str]:
    out = [state.get("Next"), state.get("Default")]
    out += [c.get("Next") for c in state.get("Choices", [])]
    out += [c["Next"] for c in state.get("Catch", [])]
    return [t for t in out if t]


def test_every_transition_lands_on_a_state_and_every_state_is_reachable():
    seen, todo = set(), [ASL["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        assert name in STATES, f"transition to missing state {name}"
        seen.add(name)
        todo.extend(_targets(STATES[name]))
    assert seen == set(STATES)


def test_no_arn_in_the_definition():
    text = ASL_PATH.read_text(encoding="utf-8")
    arns = re.findall(r"arn:aws[a-z-]*:[a-z0-9-]+:[^\"\s]*", text)
    assert all(a.startswith("arn:aws:states:::") for a in arns), arns  # only service-integration resources
    assert not re.search(r"\b\d{12}\b", text)  # no account ids


def test_placeholders_are_exactly_the_template_substitutions():
    template = load_template(REPO / "template.yaml")
    subs = template["Resources"]["DistillationStateMachine"]["Properties"]["DefinitionSubstitutions"]
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", ASL_PATH.read_text(encoding="utf-8")))
    assert used == set(subs)


def test_every_task_retries_transient_errors_and_catches_into_a_failure_record():
    for name, state in TASKS.items():
        assert state.get("Retry"), f"{name} has no Retry"
        catches = state.get("Catch", [])
        assert catches and catches[-1]["ErrorEquals"] == ["States.ALL"], f"{name} does not catch everything last"
        if name not in ("RecordFailure", "PublishRunFailed", "PublishRunSucceeded"):
            assert catches[-1]["Next"] == "RecordFailure", name
        for retrier in state["Retry"]:
            assert retrier["MaxAttempts"] <= 6 and retrier["BackoffRate"] >= 1, name


@pytest.mark.parametrize("name", sorted(LAMBDA_TASKS))
def test_lambda_tasks_retry_exactly_the_retryable_errors(name):
    state = LAMBDA_TASKS[name]
    retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
    assert "Lambda.TooManyRequestsException" in retried and "Lambda.ServiceException" in retried
    assert not retried & set(TERMINAL_ERRORS), f"{name} retries a terminal error"
    assert "States.ALL" not in retried and "States.TaskFailed" not in retried
    caught = {e for c in state["Catch"] for e in c["ErrorEquals"]}
    for error in RETRYABLE_ERRORS:
        # Retried with backoff, or (Deploy, ResourceBusyError) looped through a parameterised Wait.
        assert error in retried or error in caught, f"{name} neither retries nor loops on {error}"


def test_busy_endpoint_loops_through_a_parameterised_wait_back_to_deploy():
    [busy] = [c for c in STATES["Deploy"]["Catch"] if c["ErrorEquals"] == ["ResourceBusyError"]]
    path, name = [], busy["Next"]
    while name != "Deploy":
        path.append(name)
        state = STATES[name]
        name = state.get("Default") or state["Next"]
    assert [STATES[p]["Type"] for p in path] == ["Pass", "Choice", "Wait"]
    assert STATES[path[-1]]["SecondsPath"] == "$.timing.endpoint_poll_seconds"


def test_sdk_tasks_are_not_sync_and_select_json_safe_fields():
    for name, state in TASKS.items():
        assert not state["Resource"].endswith(".sync"), name
    describe = STATES["DescribeTrainingJob"]
    assert describe["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
    assert set(describe["ResultSelector"]) == {"job_name.$", "status.$", "secondary_status.$", "output_prefix.$"}
    start = STATES["StartTrainingJob"]
    assert start["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob"
    assert start["Parameters"]["RoleArn"] == "${TrainingRoleArn}"  # not RoleArn.$ (fails at run time)
    caught = {c["ErrorEquals"][0]: c["Next"] for c in start["Catch"]}
    assert caught["SageMaker.ResourceInUseException"] == "WaitForTraining"  # already exists = this run's job
    assert caught["SageMaker.ResourceLimitExceededException"] == "TrainingQuotaExceeded"


def test_training_status_choice_covers_every_terminal_status():
    choices = {c["StringEquals"]: c["Next"] for c in STATES["TrainingStatus"]["Choices"]}
    assert choices == {"Completed": "EvaluationGate", "Failed": "TrainingFailed", "Stopped": "TrainingStopped"}
    assert STATES["TrainingStatus"]["Default"] == "WaitForTraining"
    assert STATES["TrainingFailed"]["Parameters"]["Error"] == "TrainingFailedError"
    assert STATES["TrainingStopped"]["Parameters"]["Error"] == "TrainingStoppedError"


def test_waits_are_parameters():
    waits = {n: s for n, s in STATES.items() if s["Type"] == "Wait"}
    assert waits and all("Seconds" not in s and s["SecondsPath"].startswith("$.timing.") for s in waits.values())
    timing = dict(STATES["ReadTrigger"]["Parameters"]["timing"])
    # Every figure is a template parameter parsed to a number; the one word, what a missed latency limit does.
    assert timing.pop("latency_check_action") == "${LatencyCheckAction}"
    assert all(v.startswith("States.StringToJson('${") for v in timing.values())


def test_duplicates_end_quietly_and_failures_end_failed():
    [dup] = [c for c in STATES["ValidateSpec"]["Catch"] if c["ErrorEquals"] == ["DuplicateRunError"]]
    assert STATES[dup["Next"]]["Type"] == "Succeed"
    assert STATES["RunFailed"]["Type"] == "Fail" and STATES["RunFailed"]["ErrorPath"] == "$.error.Error"


def test_error_names_in_the_definition_are_known():
    known = set(RETRYABLE_ERRORS) | set(TERMINAL_ERRORS)
    for state in STATES.values():
        for clause in [*state.get("Retry", []), *state.get("Catch", [])]:
            for error in clause["ErrorEquals"]:
                assert error in known or "." in error, error  # States.*, Lambda.*, SageMaker.*
        if state["Type"] == "Pass" and "Error" in state.get("Parameters", {}):
            assert state["Parameters"]["Error"] in known


def test_start_training_job_sends_the_prepared_spot_fields_and_one_checkpoint_prefix_per_run():
    """Every ``$.job`` path StartTrainingJob reads is a TrainingRequest field (PrepareTrainingJob's output), spot
    and the stopping condition included; the checkpoint prefix names the run, not the job, so a retried,
    fallback or spot-restarted job of the run resumes from the same place."""
    from stratos.pipeline.models import TrainingRequest

    params = STATES["StartTrainingJob"]["Parameters"]
    assert params["EnableManagedSpotTraining.$"] == "$.job.enable_managed_spot_training"
    assert params["StoppingCondition.$"] == "$.job.stopping_condition"
    assert "StoppingCondition" not in params
    read = set(re.findall(r"\$\.job\.([a-z_]+)", json.dumps(params)))
    assert read and read <= set(TrainingRequest.model_fields)
    uri = params["CheckpointConfig"]["S3Uri.$"]
    assert uri == "States.Format('s3://${ArtifactsBucket}/checkpoints/{}/', $.run.names.run_id)"
    assert "job_name" not in uri
