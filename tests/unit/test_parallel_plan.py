"""The container obeys the parallelism plan: topology from the SageMaker contract, the torchrun launch, the batch
shape and FSDP arguments from the plan, refusals before any weights load, and the teacher freed on demand."""

from __future__ import annotations

import json

import pytest
import torch

from stratos_contract.parallelism import ParallelismError, ParallelismPlan
from stratos_train.config import HyperparameterError, TrainConfig, parse_hyperparameters
from stratos_train.entrypoint import _check_topology
from stratos_train.env import Cluster, SageMakerEnv
from stratos_train.models import build_tiny_model, train_tiny_tokenizer
from stratos_train.parallel import (
    COLLECTIVE_TIMEOUT_S,
    Topology,
    check_worker,
    decoder_layer_classes,
    is_released,
    release,
    runtime_topology,
    socket_environment,
    torchrun_arguments,
)

FSDP_2x8 = {"strategy": "fsdp_full_shard", "nodes": 2, "devices_per_node": 8, "micro_batch": 2, "grad_accum": 4}


def _env(tmp_path, **environ: str) -> SageMakerEnv:
    return SageMakerEnv.from_environ(tmp_path, environ=environ)


def test_hosts_from_sm_hosts_then_resourceconfig_then_one_local_host(tmp_path):
    env = _env(tmp_path, SM_HOSTS='["algo-1","algo-2","algo-3"]', SM_CURRENT_HOST="algo-2")
    cluster = env.cluster()
    assert (cluster.nodes, cluster.node_rank, cluster.master_addr) == (3, 1, "algo-1")

    config_dir = tmp_path / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"})
    )
    cluster = _env(tmp_path).cluster()
    assert (cluster.nodes, cluster.node_rank, cluster.network_interface) == (2, 1, "eth0")

    alone = _env(tmp_path / "elsewhere").cluster()
    assert (alone.nodes, alone.node_rank) == (1, 0)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SM_HOSTS": "algo-1,algo-2"}, "JSON list"),
        ({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"}, "must be one of"),
        ({"SM_HOSTS": '["algo-1","algo-1"]'}, "distinct"),
    ],
)
def test_malformed_host_facts_are_refused(tmp_path, environ, message):
    with pytest.raises(ValueError, match=message):
        _env(tmp_path, **environ).cluster()


def test_devices_per_node_and_master_port(tmp_path):
    topology = runtime_topology(_env(tmp_path, SM_NUM_GPUS="8"), environ={"STRATOS_MASTER_PORT": "29999"})
    assert (topology.devices_per_node, topology.master_port, topology.world_size) == (8, 29999, 8)
    if not torch.cuda.is_available():
        assert runtime_topology(_env(tmp_path), environ={}).devices_per_node == 1  # CPU host: one process
    with pytest.raises(ValueError, match="TCP port"):
        runtime_topology(_env(tmp_path), environ={"STRATOS_MASTER_PORT": "http"})


def test_torchrun_arguments_for_the_second_of_two_hosts():
    topology = Topology(Cluster(("algo-1", "algo-2"), "algo-2"), devices_per_node=8, master_port=29500)
    args = torchrun_arguments(topology, "stratos_train.entrypoint", ["--base-dir", "/opt/ml"])
    flags = dict(zip(args[:10:2], args[1:10:2], strict=True))
    assert flags == {
        "--nnodes": "2",
        "--node_rank": "1",
        "--master_addr": "algo-1",
        "--master_port": "29500",
        "--nproc_per_node": "8",
    }
    assert args[10:] == ["-m", "stratos_train.entrypoint", "--base-dir", "/opt/ml"]


def test_socket_interface_only_for_several_hosts_and_never_overriding():
    two = Cluster(("algo-1", "algo-2"), "algo-1", "eth0")
    assert socket_environment(two, {}) == {"GLOO_SOCKET_IFNAME": "eth0", "NCCL_SOCKET_IFNAME": "eth0"}
    assert socket_environment(two, {"NCCL_SOCKET_IFNAME": "ens5"}) == {"GLOO_SOCKET_IFNAME": "eth0"}
    assert socket_environment(Cluster(("algo-1",), "algo-1", "eth0"), {}) == {}


def test_plan_sets_the_batch_shape():
    config = parse_hyperparameters(
        {"per_device_batch_size": "8", "grad_accum": "1", "parallelism": json.dumps(FSDP_2x8)}
    )
    assert (config.per_device_batch_size, config.grad_accum) == (2, 4)
    assert config.steps_per_epoch(rows=128, world_size=config.parallelism.world_size) == 1  # 2 x 4 x 16 = 128
    unplanned = parse_hyperparameters({"per_device_batch_size": "8"})
    assert (unplanned.per_device_batch_size, unplanned.parallelism) == (8, None)


def test_fsdp_plan_asks_the_trainer_for_fsdp2_full_shard(tmp_path):
    config = TrainConfig(parallelism=ParallelismPlan.model_validate(FSDP_2x8))
    args = config.training_arguments(str(tmp_path), max_steps=4, use_cpu=True, layer_classes=["LlamaDecoderLayer"])
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True
    assert plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["state_dict_type"] == "FULL_STATE_DICT"  # the export is one whole HF file
    assert plugin["activation_checkpointing"] is True and not args.activation_checkpointing
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)
    assert args.ddp_timeout == COLLECTIVE_TIMEOUT_S


def test_ddp_plan_uses_the_trainers_gradient_checkpointing(tmp_path):
    plan = ParallelismPlan(strategy="ddp", devices_per_node=2, gradient_checkpointing=True)
    args = TrainConfig(parallelism=plan).training_arguments(str(tmp_path), max_steps=4, use_cpu=True)
    assert args.fsdp_plugin_args is None and args.activation_checkpointing
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    off = TrainConfig(parallelism=plan.model_copy(update={"gradient_checkpointing": False}))
    assert not off.training_arguments(str(tmp_path), max_steps=4, use_cpu=True).activation_checkpointing


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"injection_rounds": "3", "parallelism": json.dumps(FSDP_2x8)}, "closed loop"),
        (
            {
                "divergence": "reverse_kl",
                "parallelism": json.dumps({**FSDP_2x8, "teacher_placement": "topk_cache"}),
            },
            "topk_cache needs divergence",
        ),
    ],
)
def test_combinations_the_plan_cannot_run_are_refused_at_parse_time(hyperparameters, message):
    with pytest.raises(HyperparameterError, match=message):
        parse_hyperparameters(hyperparameters)


def test_topology_check_refuses_wrong_nodes_or_devices(tmp_path):
    two_hosts = _env(tmp_path, SM_HOSTS='["algo-1","algo-2"]', SM_CURRENT_HOST="algo-1", SM_NUM_GPUS="8")
    assert (
        _check_topology(TrainConfig(parallelism=ParallelismPlan.model_validate(FSDP_2x8)), two_hosts).world_size == 16
    )
    with pytest.raises(ParallelismError, match="nodes=2, but the job has 1 host"):
        _check_topology(
            TrainConfig(parallelism=ParallelismPlan.model_validate(FSDP_2x8)), _env(tmp_path, SM_NUM_GPUS="8")
        )
    with pytest.raises(ParallelismError, match="devices_per_node=4, but each host has 8"):
        plan = ParallelismPlan.model_validate({**FSDP_2x8, "devices_per_node": 4})
        _check_topology(TrainConfig(parallelism=plan), two_hosts)


def test_a_worker_outside_the_planned_world_is_refused():
    plan = ParallelismPlan.model_validate(FSDP_2x8)
    check_worker(plan, {"WORLD_SIZE": "16"})
    with pytest.raises(ParallelismError, match="one of 4"):
        check_worker(plan, {"WORLD_SIZE": "4"})


def test_release_frees_every_weight():
    tokenizer = train_tiny_tokenizer(["hello world"] * 4, vocab_size=280)
    model = build_tiny_model(tokenizer)
    assert decoder_layer_classes(model) == ["LlamaDecoderLayer"]
    assert not is_released(model)
    release(model)
    assert is_released(model)
    assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
