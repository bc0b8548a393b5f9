"""What a local run changed about its training job, in words: only what differs from the job as AWS would run it
(the job's hyperparameter, else the training container's default)."""

from __future__ import annotations

from stratos_cli.local.sizing import describe_local_job, describe_overrides, describe_sources

#: The hyperparameters PrepareTrainingJob sets for an injection plan on a GPU (strings, as SageMaker has them).
JOB = {"mode": "auto", "max_new_tokens": "64", "bf16": "true", "lora": "false", "teacher_rationales": "true"}


def test_only_overrides_that_change_the_job_are_described():
    overrides = {
        "bf16": "true",  # the job's own value
        "per_device_batch_size": "8",  # the container's default
        "learning_rate": "0.0003",
        "max_new_tokens": "320",
        "teacher_rationales": "false",
        "extra_eval_teacher": "false",
    }
    assert describe_overrides(JOB, overrides) == [
        "learning rate 0.0003 (AWS: 0.0005)",
        "decoding budget 320 tokens (AWS: 64)",
        "teacher rationales off, so Knowledge Injection trained on the task's own verified reasoning only",
        "the teacher is not scored on the further held-out sets",
    ]


def test_values_compare_as_the_container_decodes_them():
    # "5e-4" and "0.0005" are the same learning rate; "\"8\"" is SageMaker's doubly encoded 8.
    assert describe_overrides(JOB, {"learning_rate": "5e-4", "per_device_batch_size": '"8"'}) == []


def test_a_flag_the_job_turned_off_reads_on_its_own_and_unknown_keys_read_as_key_value():
    job = {**JOB, "bf16": "false"}
    assert describe_overrides(job, {"bf16": "true", "epochs": "2", "not_a_field": "x"}) == [
        "bf16",
        "epochs 2 (AWS: 1.0)",
        "not_a_field x",
    ]


def test_sources_name_a_student_pruned_only_here_and_skip_the_model_aws_loads():
    sources = {
        "teacher": ("gemma-3-270m", "gemma-3-270m"),
        "student": ("smollm2-135m-instruct", "smollm2-135m-instruct@layers=15"),
    }
    assert describe_sources(sources) == ["student smollm2-135m-instruct depth-pruned to 15 layers"]
    assert describe_sources({"student": ("smollm2-135m-instruct", "tiny:2")}) == [
        "student smollm2-135m-instruct loaded as tiny:2"
    ]
    # A catalog student that is itself depth-pruned is cut alike on AWS: loading it from PyPI changes nothing.
    pruned_on_aws = {"student": ("smollm2-135m-instruct-l15", "smollm2-135m-instruct@layers=15")}
    assert describe_sources(pruned_on_aws, {"student": "channel:student@layers=15"}) == []
    assert describe_local_job(JOB, {"max_new_tokens": "64"}, sources) == [
        "student smollm2-135m-instruct depth-pruned to 15 layers"
    ]


def test_a_change_only_the_other_mode_reads_is_left_out():
    job = {"teacher_rationales": "true", "max_new_tokens": "64"}
    overrides = {"teacher_rationales": "false", "max_new_tokens": "320"}
    rationales = "teacher rationales off, so Knowledge Injection trained on the task's own verified reasoning only"
    assert describe_local_job(job, overrides, {}, "injection") == [rationales, "decoding budget 320 tokens (AWS: 64)"]
    assert describe_local_job(job, overrides, {}, "alignment") == ["decoding budget 320 tokens (AWS: 64)"]
    assert describe_local_job(job, overrides, {}) == [rationales, "decoding budget 320 tokens (AWS: 64)"]  # unknown
