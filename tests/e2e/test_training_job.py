"""The training container through its real entry point, over a fake /opt/ml tree, on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stratos_train.export import package_model
from tests.conftest import REPO

TINY = {
    "task": "mahjong-winning-tiles",
    "teacher": "tiny:1",
    "student": "tiny:2",
    "train_size": "48",
    "eval_size": "6",
    "mode": '"auto"',  # SDK-style double encoding
    "per_device_batch_size": "8",
    "max_new_tokens": "16",
    "max_seq_len": "256",
    "probe_size": "4",
    "logging_steps": "2",
    "teacher_rationales": "true",
    "rationale_samples": "3",
}


def run_train(base: Path, hyperparameters: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = {
        **os.environ,
        "STRATOS_SM_BASE": str(base),
        "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("functions/lambda", "functions")),
    }
    return subprocess.run(
        [sys.executable, "-m", "stratos_train.entrypoint"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    result = run_train(base, {**TINY, "max_steps": "4"})
    assert result.returncode == 0, result.stderr[-3000:]
    return base, result


def test_model_at_root_and_loadable(finished_job):
    base, _ = finished_job
    model_dir = base / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= names
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.vocab_size == len(tok)
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]


def test_metrics_and_metric_lines(finished_job):
    base, result = finished_job
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    for key in ("teacher_accuracy", "student_before_accuracy", "student_after_accuracy", "mode", "mode_evidence"):
        assert key in metrics
    assert metrics["mode"] == "injection"  # a random tiny teacher covers nothing
    assert metrics["mode_evidence"]["coverage"] == 0.0
    assert metrics["injection_teacher_asked"] == 3
    assert "teacher released" in result.stderr  # generation_only: freed once its rationales are in
    assert metrics["train_steps"] == 4
    lines = [
        json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("[stratos-metrics]")
    ]
    assert any("train_loss" in line for line in lines)
    assert lines[-1]["student_after_accuracy"] == metrics["student_after_accuracy"]
    assert not (base / "output" / "failure").exists()


def test_archive_has_files_at_root(finished_job, tmp_path):
    base, _ = finished_job
    members = package_model(base / "model", tmp_path / "model.tar.gz")
    assert "config.json" in members and "tokenizer.json" in members
    assert not any("/" in m for m in members)


def test_another_recipe_starts_fresh_beside_the_run(finished_job, tmp_path):
    """A job over the same checkpoint folder with another recipe (more steps: another schedule) does not resume
    the earlier run's weights; it starts its own run folder (tests/e2e/test_resume.py covers resuming)."""
    base, _ = finished_job
    again = run_train(base, {**TINY, "max_steps": "6", "save_steps": "2"})
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["resumed_from"] == "" and metrics["train_steps"] == 6
    assert metrics["run_jobs"] == 1 and metrics["phases_reused"] == []
    assert len(list((base / "checkpoints").glob("run-*/state/train.json"))) == 2


def test_bad_hyperparameters_write_failure(tmp_path):
    result = run_train(tmp_path, {**TINY, "temperature": "-2"}, timeout=120)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert "temperature" in failure and "greater than 0" in failure


def test_missing_model_channel_writes_failure(tmp_path):
    result = run_train(tmp_path, {**TINY, "teacher": "channel:teacher"}, timeout=120)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert "channel 'teacher'" in failure
    assert len(failure) <= 1024


def test_alignment_forced_runs_kd(tmp_path):
    result = run_train(tmp_path, {**TINY, "mode": "alignment", "max_steps": "2", "evaluate_teacher": "false"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())
    assert metrics["mode"] == "alignment" and metrics["mode_evidence"]["forced"]
    assert torch.isfinite(torch.tensor(metrics["final_loss"]))
    assert metrics["heldout_kl_before"] > 0 and "heldout_kl_after" in metrics


def test_alignment_with_offline_teacher_topk_cache(tmp_path):
    hp = {**TINY, "mode": "alignment", "max_steps": "2", "evaluate_teacher": "false", "teacher_topk": "8"}
    result = run_train(tmp_path, hp)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())
    assert metrics["teacher_topk_cache_seconds"] >= 0
    assert torch.isfinite(torch.tensor(metrics["final_loss"]))
    bad = run_train(tmp_path / "bad", {**hp, "divergence": "reverse_kl"}, timeout=120)
    assert bad.returncode == 1 and "teacher_topk" in (tmp_path / "bad" / "output" / "failure").read_text()
