"""The parallelism plan (:mod:`stratos_contract.parallelism`), obeyed by the container.

* **Topology** (:func:`runtime_topology`): the hosts from the SageMaker contract
  (:meth:`~stratos_train.env.SageMakerEnv.cluster`) and the devices per host (``SM_NUM_GPUS``, else the CUDA
  device count, else 1 on a CPU host). :meth:`ParallelismPlan.check_runtime` compares the plan with it before
  any weights are loaded; a plan the hardware cannot honour fails the job there.
* **Launch** (:func:`torchrun_arguments`): one ``torchrun`` per host with ``--nnodes``, ``--node_rank`` (this
  host's index in the host list), ``--master_addr`` (the first host), ``--master_port`` and
  ``--nproc_per_node`` (the devices per host); torchrun's static rendezvous.
* **Strategies**: ``single_device`` and ``ddp`` are the Trainer's own (one process; DDP under torchrun);
  ``fsdp_full_shard`` is accelerate's FSDP2 plugin, asked for through ``TrainingArguments``
  (:func:`fsdp_config`: ``fsdp=True``, ``fsdp_config={"version": 2, ...}``; each decoder layer one FSDP unit,
  then the root). Accelerate enables that plugin only on accelerators; on a CPU it silently trains DDP
  instead, so :func:`enable_fsdp_on_cpu` turns the same plugin on there (PyTorch's FSDP2 runs on CPU with gloo):
  CPU tests and GPU jobs run one code path.
* **Teacher placement** (:meth:`ParallelismPlan.placement_for`): ``colocated`` under FSDP shards the frozen
  teacher with PyTorch's ``fully_shard`` the same way (:func:`shard_frozen`; the Trainer prepares one model
  only); ``topk_cache`` and ``generation_only`` free it before training (:func:`release`).
* **Export** (:func:`full_state_dict`, :func:`rebuild_unsharded`): after FSDP training every rank joins one
  gather of the FULL state dict to rank 0, which rebuilds the plain model it evaluates and saves once.

Torch and accelerate are imported inside the functions that need them: the entry point reads the topology and
checks the plan before paying for those imports.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from stratos_contract.parallelism import ParallelismError, ParallelismPlan
from stratos_train.env import Cluster, SageMakerEnv

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The rendezvous port on the first host when ``STRATOS_MASTER_PORT`` is unset (torchrun's own default).
DEFAULT_MASTER_PORT = 29500
MASTER_PORT_ENV = "STRATOS_MASTER_PORT"
#: Timeout of one collective, seconds. Rank 0 evaluates the teacher and the student alone (before and after
#: training) while the other ranks wait at a barrier; a large teacher's evaluation outlasts torch's 30-minute
#: default, and the job's own maximum runtime still bounds a real hang.
COLLECTIVE_TIMEOUT_S = 6 * 3600
#: Top-k teacher logits kept per completion token when the plan places the teacher as ``topk_cache`` and the job
#: sets no ``teacher_topk``: 20 cover nearly all of a trained model's probability mass at a completion token, at
#: 12 B each (2,000 examples x 100 tokens x 20 x 12 B = 48 MB).
PLAN_TOPK_DEFAULT = 20


@dataclass(frozen=True)
class Topology:
    """What this job actually runs on.

    Attributes:
        cluster: the hosts (SageMaker's ``hosts`` / ``current_host``).
        devices_per_node: processes per host: the host's GPUs, 1 on a CPU host.
        master_port: the rendezvous port on the first host.
    """

    cluster: Cluster
    devices_per_node: int
    master_port: int = DEFAULT_MASTER_PORT

    @property
    def nodes(self) -> int:
        return self.cluster.nodes

    @property
    def world_size(self) -> int:
        """Processes in the job: ``nodes x devices_per_node``."""
        return self.nodes * self.devices_per_node


def devices_per_node(env: SageMakerEnv) -> int:
    """Processes this host runs: ``SM_NUM_GPUS`` when set, else the CUDA devices torch sees, else 1 (CPU)."""
    if env.num_gpus > 0:
        return env.num_gpus
    import torch

    return max(1, torch.cuda.device_count())


def runtime_topology(env: SageMakerEnv, environ: Mapping[str, str] | None = None) -> Topology:
    """The job's topology from the SageMaker contract (see the module docstring).

    Raises:
        ValueError: malformed host facts (``SM_HOSTS``, ``resourceconfig.json``) or ``STRATOS_MASTER_PORT``.
    """
    source = os.environ if environ is None else environ
    port = source.get(MASTER_PORT_ENV) or str(DEFAULT_MASTER_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{MASTER_PORT_ENV} must be a TCP port, got {port!r}")
    return Topology(env.cluster(), devices_per_node(env), int(port))


def check_worker(plan: ParallelismPlan, environ: Mapping[str, str] | None = None) -> None:
    """Inside a torchrun worker: refuse a world that is not the plan's (e.g. a hand-made launch).

    Raises:
        ParallelismError: ``WORLD_SIZE`` differs from ``plan.world_size``.
    """
    source = os.environ if environ is None else environ
    world = int(source.get("WORLD_SIZE", "1"))
    if world != plan.world_size:
        raise ParallelismError(
            f"parallelism plans {plan.nodes} x {plan.devices_per_node} = {plan.world_size} processes, but this "
            f"worker is one of {world}"
        )


def torchrun_arguments(topology: Topology, module: str, argv: Sequence[str]) -> list[str]:
    """``torch.distributed.run`` arguments that start this host's share of the job: ``python -m module argv``
    once per device, in a static rendezvous at the first host."""
    cluster = topology.cluster
    return [
        "--nnodes",
        str(cluster.nodes),
        "--node_rank",
        str(cluster.node_rank),
        "--master_addr",
        cluster.master_addr,
        "--master_port",
        str(topology.master_port),
        "--nproc_per_node",
        str(topology.devices_per_node),
        "-m",
        module,
        *argv,
    ]


def socket_environment(cluster: Cluster, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME`` for a multi-host job: SageMaker's inter-host interface
    (``network_interface_name``), unless already set. Empty for one host."""
    source = os.environ if environ is None else environ
    if cluster.nodes < 2 or not cluster.network_interface:
        return {}
    names = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
    return {name: cluster.network_interface for name in names if not source.get(name)}


def describe(plan: ParallelismPlan, placement: str | None = None) -> str:
    """One log line: strategy, topology, batch shape and the planner's memory estimate."""
    estimate = (
        f"; planner peak {plan.estimated_peak_gib:.1f} of {plan.device_capacity_gib:.1f} GiB per device"
        if plan.device_capacity_gib
        else ""
    )
    return (
        f"{plan.strategy} over {plan.nodes} node(s) x {plan.devices_per_node} device(s): micro_batch "
        f"{plan.micro_batch} x grad_accum {plan.grad_accum} x {plan.world_size} processes = global batch "
        f"{plan.global_batch} sequences; gradient checkpointing {'on' if plan.gradient_checkpointing else 'off'}; "
        f"teacher {placement or plan.teacher_placement}{estimate}"
    )


# --- inside the workers -------------------------------------------------------------------------------------


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group() -> None:
    """Start ``torch.distributed`` when torchrun launched several processes, through accelerate's
    ``PartialState`` (which ``TrainingArguments`` later reuses), so the ranks can agree before training (the
    mode decision, the checkpoint to resume). No-op in a single process."""
    if world_size() <= 1:
        return
    import torch
    from accelerate import PartialState  # type: ignore[import-untyped]

    PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))


def leave_process_group(*, together: bool) -> None:
    """Leave ``torch.distributed`` before the process exits (no-op when it was never started).

    A rank that exits while gloo's worker threads still run aborts (``terminate called without an active
    exception``, SIGABRT), torchrun reports the job failed, and the other ranks wait for it until their
    collective timeout. ``together``: the job ended normally on every rank, so they meet at a barrier first and
    none leaves while another still talks to it; after a failure a barrier could wait for a rank that is gone,
    so each rank only tears its own group down.
    """
    if not _distributed():
        return
    import torch

    if together:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _distributed() -> bool:
    import torch

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _distributed():
        import torch

        torch.distributed.barrier()


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (picklable objects; no-op in a single process)."""
    if not _distributed():
        return value
    from accelerate.utils import broadcast_object_list  # type: ignore[import-untyped]

    box: list[Any] = [value]
    broadcast_object_list(box, from_process=0)
    result: T = box[0]
    return result


def decoder_layer_classes(model: Any) -> list[str]:
    """Class names of the decoder layers (FSDP's wrap units), e.g. ``["LlamaDecoderLayer"]``."""
    from stratos_train.trainer import decoder_and_head

    decoder = decoder_and_head(model)[0]
    return sorted({type(layer).__name__ for layer in decoder.layers})


def fsdp_config(plan: ParallelismPlan, layer_classes: Sequence[str]) -> dict[str, Any]:
    """``TrainingArguments.fsdp_config`` for ``fsdp_full_shard`` (transformers >= 5: FSDP2 by ``version``).

    Each decoder layer is one FSDP unit (``transformer_layer_cls_to_wrap``), then the root (embeddings, final
    norm, head); parameters re-sharded after each unit's forward (FULL_SHARD / ZeRO-3); activation
    checkpointing by FSDP's own wrapper when the plan asks for it (the Trainer's would re-gather in backward);
    checkpoints and exports as FULL state dicts (one HF-loadable file on rank 0).
    """
    config: dict[str, Any] = {
        "version": 2,
        "reshard_after_forward": True,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "FULL_STATE_DICT",
        "activation_checkpointing": plan.gradient_checkpointing,
    }
    if layer_classes:
        config["transformer_layer_cls_to_wrap"] = list(layer_classes)
    return config


def enable_fsdp_on_cpu(accelerator: Any, plugin_args: Mapping[str, Any] | None) -> bool:
    """Turn on accelerate's FSDP plugin on a CPU run, where accelerate silently falls back to DDP.

    Accelerate (1.16) only switches to ``DistributedType.FSDP`` for accelerator backends; a multi-process CPU
    run keeps ``MULTI_CPU`` and drops the plugin. PyTorch's FSDP2 runs on CPU with gloo, so this sets the same
    plugin and type accelerate would have set (on both shared states, as accelerate does). Call it right after
    the ``Accelerator`` is created, before anything is prepared. Returns True when it changed anything.
    """
    if plugin_args is None:
        return False
    from accelerate.state import AcceleratorState, PartialState  # type: ignore[import-untyped]
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if getattr(state, "fsdp_plugin", None) is not None or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin(**plugin_args)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    logger.info("FSDP%s on CPU (gloo): accelerate's FSDP plugin enabled for a CPU run", plugin.fsdp_version)
    return True


def is_sharded(model: Any) -> bool:
    """True when ``model`` (or a module in it) is managed by FSDP2."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


def shard_frozen(model: Any) -> Any:
    """Shard a frozen model (the colocated teacher under FSDP) like the student: ``fully_shard`` per decoder
    layer, then the root; eval mode, no gradients. Forward passes are collectives: every rank must run them.
    Returns the same module, sharded in place."""
    from torch.distributed.fsdp import fully_shard

    from stratos_train.trainer import decoder_and_head

    model.eval()
    model.requires_grad_(False)
    for layer in decoder_and_head(model)[0].layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def release(model: Any) -> None:
    """Free a model's weights now (the teacher once it is no longer needed): every parameter and buffer moves
    to the ``meta`` device, so the memory goes back even while other objects still reference the module; any
    later use fails loudly instead of silently using stale weights."""
    import torch

    model.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # hand the freed blocks back to the device, not just to torch's cache


def is_released(model: Any) -> bool:
    """True when :func:`release` freed ``model``."""
    return any(p.device.type == "meta" for p in model.parameters())


def full_state_dict(model: Any) -> dict[str, Any]:
    """The FULL state dict of an FSDP2 model, gathered to rank 0 on CPU (``{}`` on the other ranks). A
    collective: every rank must call it. Activation-checkpoint wrappers leave no trace in the keys."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state: dict[str, Any] = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return state if is_main() else {}


def rebuild_unsharded(sharded: Any, state: Mapping[str, Any], wrap: Callable[[Any], Any] | None = None) -> Any:
    """On rank 0: a plain (unsharded) copy of an FSDP-trained model holding the gathered ``state``.

    ``sharded`` gives the architecture: its ``*ForCausalLM`` class (FSDP2 subclasses it in place) and config.
    ``wrap`` rebuilds the same wrappers (LoRA) before the weights are loaded, so the keys match.

    Raises:
        RuntimeError: ``state`` misses or adds weights (strict load).
    """
    from torch.distributed.fsdp import FSDPModule
    from transformers import PreTrainedModel

    from stratos_train.trainer import unwrap_model

    base = unwrap_model(sharded)
    cls = next(c for c in type(base).__mro__ if issubclass(c, PreTrainedModel) and not issubclass(c, FSDPModule))
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    fresh = cls._from_config(base.config, dtype=dtype) if dtype is not None else cls._from_config(base.config)
    model = wrap(fresh) if wrap is not None else fresh
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    return model
