"""The parallelism plan: one model both sides import, carried as one SageMaker hyperparameter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratos_contract.hyperparameters import TrainingHyperparameters, encode_hyperparameters, parse_hyperparameters
from stratos_contract.parallelism import ParallelismError, ParallelismPlan


def test_the_plan_round_trips_as_one_hyperparameter_string():
    plan = ParallelismPlan(strategy="fsdp_full_shard", nodes=2, devices_per_node=4, micro_batch=2, grad_accum=8)
    wire = encode_hyperparameters(TrainingHyperparameters(parallelism=plan))
    assert list(wire) == ["parallelism"] and isinstance(wire["parallelism"], str)
    back = parse_hyperparameters(wire, TrainingHyperparameters).parallelism
    assert back == plan and back.world_size == 8 and back.global_batch == 2 * 8 * 8


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"strategy": "single_device", "devices_per_node": 2}, "single_device runs 1 process"),
        ({"strategy": "ddp"}, "ddp needs at least 2 processes"),
        ({"strategy": "fsdp_full_shard", "nodes": 17, "devices_per_node": 1}, "less than or equal to 16"),
        ({"strategy": "pipeline"}, "strategy"),
    ],
)
def test_inconsistent_plans_are_refused(fields, reason):
    with pytest.raises(ValidationError, match=reason):
        ParallelismPlan(**fields)


def test_the_container_refuses_a_topology_it_was_not_given():
    plan = ParallelismPlan(strategy="fsdp_full_shard", nodes=2, devices_per_node=4)
    plan.check_runtime(2, 4)
    with pytest.raises(ParallelismError, match=r"parallelism.nodes=2, but the job has 1 host"):
        plan.check_runtime(1, 4)
    with pytest.raises(ParallelismError, match=r"parallelism.devices_per_node=4, but each host has 8"):
        plan.check_runtime(2, 8)


def test_teacher_placement_follows_the_mode_the_job_runs():
    colocated = ParallelismPlan(teacher_placement="colocated")
    assert colocated.placement_for("alignment") == "colocated"
    assert colocated.placement_for("injection") == "generation_only"
    assert ParallelismPlan(teacher_placement="generation_only").placement_for("alignment") == "topk_cache"
