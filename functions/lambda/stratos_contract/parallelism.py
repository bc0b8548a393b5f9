"""How one training job spreads over its hardware: the parallelism plan, written once.

The planner chooses it from the same memory model it uses for feasibility
(``stratos.planner.estimators.choose_parallelism``, sized by ``plan_memory``); PrepareTrainingJob sends it as
the ``parallelism`` hyperparameter (one JSON string) and sets the job's ``InstanceCount`` to
:attr:`ParallelismPlan.nodes`; the container obeys it, or refuses it before loading any weights
(:func:`ParallelismPlan.check_runtime`).

Strategies (PyTorch's, through transformers / accelerate):

* ``single_device`` — one process, one device (or the CPU);
* ``ddp`` — one process per device, each with a full replica of student, optimiser state and teacher;
  gradients all-reduced (``DistributedDataParallel``);
* ``fsdp_full_shard`` — one process per device; parameters, gradients and optimiser state sharded over every
  device of every node (FSDP ``FULL_SHARD`` / ZeRO-3), gathered layer by layer for compute.

Teacher placement:

* ``colocated`` — the teacher's BF16 weights sit beside the student on every device (sharded like it under
  FSDP) and run forward each step (Knowledge Alignment);
* ``topk_cache`` — a first phase runs the teacher alone and caches its top-k logits per completion token; the
  teacher is freed before the student trains (Knowledge Alignment when teacher and student together do not
  fit);
* ``generation_only`` — the teacher only generates training data before training, then is freed (Knowledge
  Injection);
* ``external`` — the teacher is not on the training instance at all: the job calls it (a Bedrock model, a
  SageMaker endpoint) and keeps only its answers (text, or top-k log-probabilities).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["single_device", "ddp", "fsdp_full_shard"]
TeacherPlacement = Literal["colocated", "topk_cache", "generation_only", "external"]

#: The most nodes (instances) one training job may span here (SageMaker allows more; the planner's time model
#: is not calibrated beyond this).
MAX_NODES = 16


class ParallelismError(ValueError):
    """The container cannot honour a parallelism plan (the message says which field and why)."""


class ParallelismPlan(BaseModel):
    """One training job's parallelism: strategy, topology, batch shape, checkpointing, teacher placement.

    Attributes:
        strategy: see the module docstring.
        nodes: instances (SageMaker ``InstanceCount``).
        devices_per_node: processes per node: the instance's accelerators, 1 on a CPU instance.
        micro_batch: sequences per device per forward/backward.
        grad_accum: micro-batches per optimiser step; the global batch is
            ``micro_batch x grad_accum x nodes x devices_per_node`` sequences.
        gradient_checkpointing: recompute activations in backward (the memory model assumes it).
        teacher_placement: see the module docstring.
        estimated_peak_gib: the planner's per-device peak memory estimate for this plan, GiB.
        device_capacity_gib: the memory of one device the estimate was checked against, GiB.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = "single_device"
    nodes: int = Field(default=1, ge=1, le=MAX_NODES, description="Instances (InstanceCount).")
    devices_per_node: int = Field(default=1, ge=1, le=64, description="Processes per node (accelerators; 1 on CPU).")
    micro_batch: int = Field(default=1, ge=1, le=1024, description="Sequences per device per micro-step.")
    grad_accum: int = Field(default=1, ge=1, le=1024, description="Micro-steps per optimiser step.")
    gradient_checkpointing: bool = Field(default=True, description="Recompute activations in backward.")
    teacher_placement: TeacherPlacement = "colocated"
    estimated_peak_gib: float = Field(default=0.0, ge=0, description="Planner's per-device peak estimate, GiB.")
    device_capacity_gib: float = Field(default=0.0, ge=0, description="One device's memory, GiB.")

    @property
    def world_size(self) -> int:
        """Processes in the job: ``nodes x devices_per_node``."""
        return self.nodes * self.devices_per_node

    @property
    def global_batch(self) -> int:
        """Sequences per optimiser step over all processes."""
        return self.micro_batch * self.grad_accum * self.world_size

    @model_validator(mode="after")
    def _consistent(self) -> ParallelismPlan:
        if self.strategy == "single_device" and self.world_size != 1:
            raise ValueError(f"single_device runs 1 process, not {self.nodes} x {self.devices_per_node}")
        if self.strategy != "single_device" and self.world_size < 2:
            raise ValueError(f"{self.strategy} needs at least 2 processes (nodes x devices_per_node)")
        return self

    def check_runtime(self, nodes: int, devices_per_node: int) -> None:
        """Refuse a plan this job's hardware cannot honour, before any weights are loaded.

        Args:
            nodes: hosts SageMaker gave the job (``SM_HOSTS``); devices_per_node: processes per host (the
                accelerators; 1 on CPU).

        Raises:
            ParallelismError: the topology differs from the plan.
        """
        if nodes != self.nodes:
            raise ParallelismError(f"parallelism.nodes={self.nodes}, but the job has {nodes} host(s)")
        if devices_per_node != self.devices_per_node:
            raise ParallelismError(
                f"parallelism.devices_per_node={self.devices_per_node}, but each host has {devices_per_node} device(s)"
            )

    def placement_for(self, mode: str) -> TeacherPlacement:
        """The teacher placement for the mode the job actually runs (``auto`` may decide otherwise than the plan
        assumed): Knowledge Injection always ``generation_only``; Knowledge Alignment the planned placement, or
        ``topk_cache`` (the teacher alone, then freed: never more memory than either) when the plan assumed
        injection. An ``external`` teacher stays external in either mode."""
        if self.teacher_placement == "external":
            return "external"
        if mode == "injection":
            return "generation_only"
        return "topk_cache" if self.teacher_placement == "generation_only" else self.teacher_placement
