"""The training loop: token-normalised gradient accumulation, DDP equivalence, KD actually distils."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers.tiny_training import run


def test_batch8_accum1_equals_batch1_accum8():
    """Same update whether 8 rows come at once or one by one with accumulation (token-level normalisation)."""
    whole = run(batch=8, accum=1, steps=1, kd=True)
    split = run(batch=1, accum=8, steps=1, kd=True)
    a, b = torch.tensor(whole["params"]), torch.tensor(split["params"])
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert whole["losses"][0] == pytest.approx(split["losses"][0], rel=1e-4)


def test_training_moves_parameters_and_lowers_loss():
    result = run(batch=8, accum=1, steps=4, kd=False)
    assert result["losses"][-1] < result["losses"][0]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo), batch 4 each, matches 1 process with batch 8."""
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"}
    common = ["-m", "tests.helpers.tiny_training"]
    subprocess.run(
        [sys.executable, *common, str(single), "--batch", "8", "--steps", "3", "--kd"], check=True, env=env, cwd=REPO
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29731",
            *common,
            str(double),
            "--batch",
            "4",
            "--steps",
            "3",
            "--kd",
        ],
        check=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert len(one["losses"]) == len(two["losses"]) == 3
    for x, y in zip(one["losses"], two["losses"], strict=True):
        assert x == pytest.approx(y, rel=2e-3)
    assert torch.allclose(torch.tensor(one["params"]), torch.tensor(two["params"]), atol=1e-4)
