"""Hyperparameters as SageMaker delivers them, and the /opt/ml contract paths."""

from __future__ import annotations

import json

import pytest

from stratos_train.config import HyperparameterError, decode_hyperparameter, parse_hyperparameters
from stratos_train.env import FAILURE_REASON_MAX, SageMakerEnv


def test_strings_and_double_encoded_values():
    plain = parse_hyperparameters({"temperature": "2", "lora_targets": '["q_proj","v_proj"]', "bf16": "true"})
    assert plain.temperature == 2.0 and plain.lora_targets == ["q_proj", "v_proj"] and plain.bf16 is True
    sdk = parse_hyperparameters({"temperature": '"2"', "bf16": '"true"', "lora_targets": json.dumps('["q_proj"]')})
    assert sdk.temperature == 2.0 and sdk.bf16 is True and sdk.lora_targets == ["q_proj"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gsm8k", "gsm8k"),
        ('"gsm8k"', "gsm8k"),
        ("2", 2),
        ("2.5", 2.5),
        ("null", None),
        ("[1]", [1]),
        ("all-linear", "all-linear"),
    ],
)
def test_decode_hyperparameter(raw, expected):
    assert decode_hyperparameter(raw) == expected


def test_sagemaker_keys_ignored_and_dashes_accepted():
    cfg = parse_hyperparameters({"sagemaker_program": "train", "max-new-tokens": "32"})
    assert cfg.max_new_tokens == 32


def test_errors_name_the_hyperparameter():
    with pytest.raises(HyperparameterError) as info:
        parse_hyperparameters({"temperature": "-1", "beta": "2", "typo_field": "1"})
    text = str(info.value)
    assert "temperature=-1" in text and "beta=2" in text and "typo_field" in text


def test_env_paths_derive_from_one_base(tmp_path):
    env = SageMakerEnv.from_environ(tmp_path, environ={})
    assert env.model_dir == tmp_path / "model"
    assert env.metrics_path == tmp_path / "output" / "data" / "metrics.json"
    assert env.failure_path == tmp_path / "output" / "failure"
    assert env.checkpoint_dir == tmp_path / "checkpoints"
    assert env.channel("train") is None
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    assert env.channel("train") == tmp_path / "input" / "data" / "train"


def test_env_overrides(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    env = SageMakerEnv.from_environ(
        tmp_path, environ={"SM_CHANNEL_TRAIN": str(other), "SM_MODEL_DIR": str(tmp_path / "m"), "SM_NUM_GPUS": "4"}
    )
    assert env.channel("train") == other and env.model_dir == tmp_path / "m" and env.num_gpus == 4


def test_hyperparameters_file_and_failure(tmp_path):
    env = SageMakerEnv.from_environ(tmp_path, environ={})
    env.hyperparameters_path.parent.mkdir(parents=True)
    env.hyperparameters_path.write_text(json.dumps({"temperature": "2", "epochs": 3}))
    assert env.read_hyperparameters() == {"temperature": "2", "epochs": "3"}
    env.write_failure("x" * 5000)
    assert len(env.failure_path.read_text()) == FAILURE_REASON_MAX


def test_the_model_card_names_catalog_ids_and_how_a_pruned_student_was_loaded():
    from stratos_train.export import render_model_card

    cfg = parse_hyperparameters(
        {"student": "channel:student@layers=15", "student_id": "smollm2-135m-instruct-l15", "teacher_id": ""}
    )
    assert (cfg.student_id, cfg.teacher_id, cfg.teacher) == ("smollm2-135m-instruct-l15", "", "smollm2-135m-instruct")
    card = render_model_card(
        {
            "teacher": cfg.teacher_id or cfg.teacher,
            "student": cfg.student_id or cfg.student,
            "teacher_source": cfg.teacher,
            "student_source": cfg.student,
        }
    )
    assert "into student `smollm2-135m-instruct-l15`" in card
    assert "student `smollm2-135m-instruct-l15` loaded from `channel:student@layers=15`" in card
    assert "teacher `smollm2-135m-instruct` loaded" not in card  # the same string: nothing to explain
