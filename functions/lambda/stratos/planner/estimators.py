"""Estimators: memory fit, p50 latency, throughput, training time and cost, expected accuracy.

Pure functions of catalog records (:mod:`stratos.planner.catalog`) and plain numbers; no AWS, no pydantic in
the arithmetic. Units are in every name: bytes, GiB, seconds, ms, hours, USD, FLOPs, tokens.

Serving memory (per device; tensor parallelism splits weights and KV cache over an instance's GPUs)::

    need  = (weights + kv_cache + workspace) / devices
    weights   = params x 2 bytes                        (BF16 serving)
    kv_cache  = concurrency x kv_bytes(prompt + output)
    kv_bytes(n) = 2 (K and V) x 2 bytes x kv_heads x head_dim x (full_layers x n + local_layers x min(n, window))
    workspace = min(concurrency x prompt, 8192) x hidden x 2 bytes x 8 + concurrency x vocab_padded x 4 bytes
    fits  <=>  need <= device_memory x utilisation - reserve

  utilisation 0.90 is vLLM's default ``gpu_memory_utilization``; the reserve (CUDA context, allocator,
  cuBLAS workspace) is per device. The KV formula is the standard one (e.g. vLLM's block manager); sliding
  window layers (Gemma 3) keep at most ``window`` tokens.

p50 latency (roofline model, Williams et al. 2009; applied to LLM inference as in Pope et al. 2022,
"Efficiently Scaling Transformer Inference")::

    prefill_s(P)  = prefill_flops(P) / (peak_flops x prefill_efficiency)                 compute-bound
    step_s(b, n)  = max(bytes_read(b, n) / (bandwidth x bandwidth_efficiency),          bandwidth-bound
                        b x decode_flops(n) / (peak_flops x decode_efficiency)) + step_overhead
    p50_ms        = request_overhead + 1000 x (c x prefill_s(P) + O x step_s(c, P + O/2))

  With ``c`` requests in flight (continuous batching, prefill not chunked), one request's lifetime
  contains the prefills of all ``c`` requests and ``O`` decode steps at batch ``c``. Peak FLOP/s and
  bandwidth are the catalog's dense BF16 and datasheet figures times the device count (times
  :data:`MULTI_DEVICE_EFFICIENCY` when split over several devices).

Training time (FLOP counting as in Kaplan et al. 2020 and the PaLM paper's MFU, Chowdhery et al. 2022)::

    tokens      = examples x tokens_per_example x epochs
    alignment:  flops = tokens x (6 N_student + 2 N_teacher)    student fwd+bwd, teacher fwd (logits);
                the teacher's term once, not per epoch, when it fills a top-k cache before training
    injection:  flops = tokens x 6 N_student, plus the teacher generating rationale + answer for each
                example (``attempts`` tries each: failed verifications are re-sampled), timed with the
                same roofline as serving at a generation batch
    hours = startup + flops / (peak_flops x MFU x scale) / 3600 + generation + evaluation
    scale = 1 on one node, nodes x INTER_NODE_EFFICIENCY on several

  Evaluation: the student generates on the eval set before and after training, the teacher once (the
  coverage probe).

Managed spot training (:func:`spot_estimate`; figures per family from the catalog's dated ``spot.json``)::

    overhead   = nodes x interruptions_per_hour x (checkpoint_interval / 2 + restart) / 60 min
    spot_hours = on_demand_hours x (1 + overhead)
    spot_cost  = usd_per_hour x nodes x (1 - savings) x spot_hours

  An interruption loses, on average, the work since the last checkpoint (half the container's checkpoint
  interval, :data:`SPOT_CHECKPOINT_INTERVAL_MINUTES`) plus the time to get capacity back and restart
  (:data:`SPOT_RESTART_MINUTES`); a job over several nodes stops when any one is reclaimed. ``savings`` is the
  fraction SageMaker reports as a spot job's saving (``1 - billable / training seconds``), so the cost is the
  on-demand price of the longer, interrupted job less that fraction.

Training memory and the parallelism plan (per device; :func:`plan_memory`, :func:`choose_parallelism`)::

    need(phase) = state / shard + device + micro_batch x sequence      shard = world size under FSDP, else 1
    peak        = max over the phases (training; the teacher's top-k pass; the teacher generating)
    state    = 16 bytes/param student (mixed-precision AdamW, ZeRO: Rajbhandari et al. 2020)
               + 2 bytes/param BF16 teacher when it sits beside the student
    device   = DDP gradient buckets (DDP) or FSDP's unsharded units (FSDP), generation KV cache
    sequence = activations with gradient checkpointing + the FP32 logits the loss needs

  A plan is ``single_device`` / ``ddp`` (a full replica per device) / ``fsdp_full_shard`` (ZeRO-3) over one
  node's devices or over several nodes; :func:`choose_parallelism` takes the cheapest that fits. The training
  job runs exactly that plan (``stratos_contract.parallelism``).

Expected accuracy (our own model; the paper publishes none)::

    d(n)   = 1 - exp(-n / n_half)                      data saturation
    c(r)   = 1 / (1 + beta_mode x max(0, log10(r / r0)))   capacity gap (Mirzadeh et al. 2020)
    target = teacher prior                              alignment (imitating the teacher's distribution)
           = t + (1 - t) x lift_source                  injection (verified, reverse-synthesised data
                                                        fixes part of the teacher's errors; STaR, Zelikman
                                                        et al. 2022, rationalisation)
    acc    = min(1, s + gain_mode x d(n) x c(r) x max(0, target - s))

All efficiency factors below are stated assumptions (not measurements of this project), chosen from the
cited literature and the CPU figures in the project's NOTES; the spec's ``candidates.accuracy_priors``
overrides the priors the accuracy model starts from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from stratos.planner.catalog import GIB, InstanceSpec, ModelSpec
from stratos_contract.hyperparameters import TrainingHyperparameters
from stratos_contract.parallelism import MAX_NODES, ParallelismPlan, Strategy, TeacherPlacement

BYTES_BF16 = 2
"""Bytes per BF16 value (weights, KV cache)."""
BYTES_FP32 = 4
"""Bytes per FP32 value (logits for the loss)."""
TRAINING_STATE_BYTES_PER_PARAM = 16
"""Mixed-precision AdamW: BF16 weights (2) + BF16 grads (2) + FP32 master (4) + Adam m and v (8). ZeRO, §3."""
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 34
"""One transformer layer's activations, bytes per token per hidden unit, BF16, flash attention
(Korthikanti et al. 2022, "Reducing Activation Recomputation", Eq. 2 without the attention-score term)."""
SERVING_WORKSPACE_FACTOR = 8
"""Prefill working buffers, in units of one BF16 hidden vector per prompt token (our estimate)."""
PREFILL_CHUNK_TOKENS = 8192
"""Most prompt tokens prefilled in one forward pass (chunked prefill, vLLM's ``max_num_batched_tokens``)."""
REQUEST_OVERHEAD_MS = 15.0
"""SageMaker real-time endpoint overhead per request (router + container HTTP), ms (our estimate)."""
MULTI_DEVICE_EFFICIENCY = 0.85
"""Scaling efficiency when work is split over several devices (tensor parallel / FSDP), fraction."""
INTER_NODE_EFFICIENCY = 0.55
"""Training throughput per node when one job spans several nodes, relative to the same work on one node
(FSDP ``FULL_SHARD`` over the network), fraction. KempnerForge's MFU-scaling benchmark (Llama-3 7B, FSDP,
H200, InfiniBand; kempnerinstitute.github.io/KempnerForge/reference/benchmarks.html) falls from 93 % of linear
within one node to 53 % at the first inter-node hop and 47 % at 32 GPUs: 53 / 93 = 0.57, rounded down for
instances with less network than InfiniBand (the catalog does not record network bandwidth)."""
DDP_BUCKET_BYTES_PER_PARAM = 4
"""DDP's all-reduce buckets, bytes per student parameter: a second copy of the FP32 gradients (autocast keeps
them FP32) unless ``gradient_as_bucket_view=True``, which saves "the total gradients size" (PyTorch
``DistributedDataParallel`` documentation); assumed off, as in transformers' and accelerate's defaults."""
FSDP_PREFETCH_UNITS = 2
"""Decoder-layer FSDP units unsharded at once on one device: the one computing and the one prefetched (FSDP's
``limit_all_gathers`` rate limiter allows at most two all-gathers in flight; Zhao et al. 2023, "PyTorch FSDP:
Experiences on Scaling Fully Sharded Data Parallel")."""
FSDP_UNSHARDED_STUDENT_BYTES_PER_PARAM = BYTES_BF16 + BYTES_FP32
"""An unsharded student unit: its BF16 all-gathered parameters and, in backward, its FP32 gradient before the
reduce-scatter (FSDP mixed precision with ``param_dtype`` BF16, ``reduce_dtype`` FP32), bytes per parameter."""
FSDP_UNSHARDED_TEACHER_BYTES_PER_PARAM = BYTES_BF16
"""An unsharded teacher unit: BF16 parameters only (forward, no gradient), bytes per parameter."""
STUDENT_LOGIT_COPIES = 2
"""FP32 vocabulary rows per position for the student's loss: its logits and their gradient."""
TEACHER_TOPK_LOGIT_COPIES = 2
"""FP32 vocabulary rows per position while the teacher alone fills the top-k cache: its logits and the
log-softmax the top-k is taken from."""
GENERATION_BATCH_SEQUENCES: int = TrainingHyperparameters.model_fields["eval_batch_size"].default
"""Most sequences the container generates together (evaluation, the mode probe, injection data): the
contract's ``eval_batch_size`` default, read from the contract (its one home); a plan lowers it where the
teacher's KV cache would not fit (:func:`plan_generation_batch`)."""
TARGET_GLOBAL_BATCH_SEQUENCES = 32
"""Sequences per optimiser step a parallelism plan aims at (``micro_batch x grad_accum x world size``), our
choice: 4x the container's default of 8 sequences per device, so that a 1-device and an 8-device plan take
optimiser steps of the same size and one learning rate serves both (~16k tokens a step at 512 tokens)."""
MAX_MICRO_BATCH = 8
"""Largest micro-batch, sequences per device: the container's ``per_device_batch_size`` default; beyond it
these models gain little throughput per device at a few hundred tokens a sequence (our estimate)."""
TRAINING_STARTUP_HOURS = 10 / 60
"""Billable start of a training job: image pull, model download, first step; hours (our estimate)."""
DEFAULT_EPOCHS = 3
"""Passes over the training set (the usual setting for task-specific distillation)."""
RATIONALE_TOKENS: int = TrainingHyperparameters.model_fields["rationale_tokens"].default
"""Tokens of teacher-written reasoning per example in Knowledge Injection: the training job's budget for them
(``rationale_tokens``, our estimate of a rationale's length)."""
GENERATION_ATTEMPTS = 1.5
"""Teacher generations per training example in injection: failed verifications are re-sampled."""
SPOT_CHECKPOINT_INTERVAL_MINUTES: float = TrainingHyperparameters.model_fields["checkpoint_interval_minutes"].default
"""Wall-clock minutes between the training container's checkpoints (its ``checkpoint_interval_minutes``
default, read from the contract): an interruption loses half of it on average."""
SPOT_RESTART_MINUTES = 5.0
"""Minutes from a spot interruption until training runs again: capacity back, instance and container start,
checkpoint download (our estimate, a planning figure like the interruption rates)."""
MIN_CAPACITY_RATIO = 1.5
"""A teacher must have at least this many times the student's parameters (else plain fine-tuning)."""
MAX_CAPACITY_RATIO = 600.0
"""Beyond this teacher/student parameter ratio direct distillation is ineffective (Mirzadeh et al. 2020)."""

Mode = Literal["alignment", "injection"]
DataSource = Literal["generator", "builtin", "jsonl"]


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fractions of peak a workload reaches on one tier of hardware (stated assumptions).

    Attributes:
        prefill_compute: prefill FLOP/s over dense BF16 peak.
        decode_compute: decode FLOP/s over peak when a large batch makes decode compute-bound.
        decode_bandwidth: achieved over datasheet memory bandwidth while decoding.
        decode_step_overhead_ms: fixed time per decode step (kernel launches, scheduler, sampling), ms.
        training_mfu: model FLOPs utilisation of training (PaLM's MFU).
        generation_batch: most sequences generated together when the teacher writes rationales or the eval
            runs (fewer when their KV cache does not fit, see :func:`generation_batch`).
        memory_utilisation: fraction of device memory the serving/training process may use.
        memory_reserve_gib: memory per device the runtime keeps for itself, GiB.
    """

    prefill_compute: float
    decode_compute: float
    decode_bandwidth: float
    decode_step_overhead_ms: float
    training_mfu: float
    generation_batch: int
    memory_utilisation: float
    memory_reserve_gib: float


#: Efficiency by hardware tier. GPU decode reaches 75-80 % of HBM/GDDR bandwidth and prefill ~50 % of
#: peak (vLLM/TensorRT-LLM benchmarks); training MFU 35-40 % (PaLM 46 %, Megatron-LM 40-50 % at scale:
#: less on one node with small models). CPU (Sapphire Rapids, AMX): calibrated so that prefill reaches the
#: ~0.17 TFLOP/s per core this project measured for BF16 forward passes without AMX, times ~3 for AMX.
EFFICIENCY: dict[str, Efficiency] = {
    "datacenter": Efficiency(0.55, 0.5, 0.80, 1.0, 0.40, 64, 0.90, 1.0),
    "workstation": Efficiency(0.50, 0.5, 0.75, 1.5, 0.35, 32, 0.90, 0.75),
    "cpu": Efficiency(0.25, 0.25, 0.60, 4.0, 0.15, 8, 0.80, 2.0),
}

KD_GAIN: dict[Mode, float] = {"alignment": 0.5, "injection": 0.5}
"""Fraction of the (capacity- and data-scaled) gap to the target that distillation closes (our estimate)."""
CAPACITY_GAP_BETA: dict[Mode, float] = {"alignment": 0.5, "injection": 0.25}
"""Strength of the capacity-gap penalty; sequence-level KD (injection) is less sensitive (Kim & Rush 2016)."""
CAPACITY_GAP_R0 = 10.0
"""Teacher/student parameter ratio up to which the capacity gap costs nothing."""
DATA_HALF_EXAMPLES = 500.0
"""n_half of the data-saturation curve, training examples: narrow tasks saturate within a few thousand."""
VERIFICATION_LIFT: dict[DataSource, float] = {"generator": 0.5, "builtin": 0.5, "jsonl": 0.3}
"""Share of the teacher's errors that verified injection data fixes: answers exact by construction or
checkable (generator, builtin) vs free-text references (jsonl). Our estimate."""


def _efficiency(instance: InstanceSpec) -> Efficiency:
    return EFFICIENCY[instance.tier]


def _scale(instance: InstanceSpec) -> float:
    """Devices times the multi-device efficiency (1.0 for a single device)."""
    devices = instance.devices
    return float(devices) if devices == 1 else devices * MULTI_DEVICE_EFFICIENCY


def peak_flops(instance: InstanceSpec) -> float:
    """Dense BF16 peak of the whole instance, FLOP/s, after multi-device scaling."""
    return instance.device_bf16_tflops * 1e12 * _scale(instance)


def bandwidth_bytes_per_s(instance: InstanceSpec) -> float:
    """Memory bandwidth of the whole instance, bytes/s, after multi-device scaling."""
    return instance.device_bandwidth_gbps * 1e9 * _scale(instance)


def weight_bytes(model: ModelSpec) -> float:
    """BF16 weights, bytes (all parameters, embeddings included)."""
    return float(model.params * BYTES_BF16)


def _layer_split(model: ModelSpec) -> tuple[int, int]:
    """``(full-attention layers, sliding-window layers)``."""
    if model.sliding_window is None or model.full_attention_layers is None:
        return model.layers, 0
    return model.full_attention_layers, model.layers - model.full_attention_layers


def kv_cache_bytes(model: ModelSpec, tokens: int) -> float:
    """KV cache of ONE sequence of ``tokens`` tokens, bytes (BF16 K and V for every layer).

    Sliding-window layers keep at most ``sliding_window`` tokens.
    """
    full, local = _layer_split(model)
    window = model.sliding_window or tokens
    cached = full * tokens + local * min(tokens, window)
    return 2.0 * BYTES_BF16 * model.kv_heads * model.head_dim * cached


def _attended_pairs(model: ModelSpec, tokens: int) -> float:
    """(query, key) pairs a causal prefill of ``tokens`` computes, summed over layers."""
    full, local = _layer_split(model)
    pairs = full * tokens * (tokens + 1) / 2.0
    if local:
        w = min(tokens, model.sliding_window or tokens)
        pairs += local * (tokens * w - w * (w - 1) / 2.0)
    return pairs


def prefill_flops(model: ModelSpec, tokens: int) -> float:
    """FLOPs to prefill one prompt of ``tokens`` tokens.

    ``2 x body_params x tokens`` (matmuls) + ``4 x heads x head_dim`` per attended (query, key) pair (QK^T
    and AV) + one LM-head projection (only the last position's logits are needed).
    """
    attention = 4.0 * model.attention_heads * model.head_dim * _attended_pairs(model, tokens)
    return 2.0 * model.body_params * tokens + attention + 2.0 * model.embedding_params


def decode_flops_per_token(model: ModelSpec, context: float) -> float:
    """FLOPs to decode one token at ``context`` tokens of context (matmuls + LM head + attention)."""
    full, local = _layer_split(model)
    window = float(model.sliding_window or context)
    attended = full * context + local * min(context, window)
    return 2.0 * (model.body_params + model.embedding_params) + 4.0 * model.attention_heads * model.head_dim * attended


def decode_weight_bytes(model: ModelSpec) -> float:
    """Weight bytes read per decode step: the body and the LM head (an untied input embedding is only gathered)."""
    return float((model.body_params + model.embedding_params) * BYTES_BF16)


def prefill_seconds(model: ModelSpec, instance: InstanceSpec, tokens: int) -> float:
    """Compute-bound prefill of one prompt, seconds."""
    return prefill_flops(model, tokens) / (peak_flops(instance) * _efficiency(instance).prefill_compute)


def decode_step_seconds(model: ModelSpec, instance: InstanceSpec, batch: int, context: float) -> float:
    """One decode step for ``batch`` sequences at ``context`` tokens each, seconds (roofline + overhead)."""
    eff = _efficiency(instance)
    read = decode_weight_bytes(model) + batch * kv_cache_bytes(model, max(1, round(context)))
    memory_s = read / (bandwidth_bytes_per_s(instance) * eff.decode_bandwidth)
    compute_s = batch * decode_flops_per_token(model, context) / (peak_flops(instance) * eff.decode_compute)
    return max(memory_s, compute_s) + eff.decode_step_overhead_ms / 1000.0


def p50_latency_ms(
    model: ModelSpec, instance: InstanceSpec, prompt_tokens: int, output_tokens: int, concurrency: int
) -> float:
    """Median end-to-end latency of one request, ms, with ``concurrency`` requests in flight per instance.

    ``request_overhead + 1000 x (concurrency x prefill_s(prompt) + output x step_s(concurrency, prompt + output/2))``
    (see the module docstring).
    """
    prefill_s = prefill_seconds(model, instance, prompt_tokens)
    step_s = decode_step_seconds(model, instance, concurrency, prompt_tokens + output_tokens / 2.0)
    return REQUEST_OVERHEAD_MS + 1000.0 * (concurrency * prefill_s + output_tokens * step_s)


def throughput_tokens_per_s(p50_ms: float, output_tokens: int, concurrency: int) -> float:
    """Generated tokens/s of one instance in the steady state of :func:`p50_latency_ms`."""
    return concurrency * output_tokens / (p50_ms / 1000.0)


@dataclass(frozen=True, slots=True)
class MemoryFit:
    """Memory need against capacity on one device, GiB.

    Attributes:
        need_gib: what one device must hold.
        capacity_gib: what one device offers after utilisation and reserve.
        parts_gib: the named terms of ``need_gib``, GiB: serving, summed over the instance (weights, KV cache,
            ...); training (:func:`plan_memory`), per device, of the peak phase.
        phase: the training phase that peaks (:func:`memory_phases`); empty for serving.
    """

    need_gib: float
    capacity_gib: float
    parts_gib: dict[str, float]
    phase: str = ""

    @property
    def fits(self) -> bool:
        """True when the need is within capacity."""
        return self.need_gib <= self.capacity_gib

    def reason(self) -> str:
        """Why it does not fit, in words (empty when it fits)."""
        if self.fits:
            return ""
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.parts_gib.items())
        return f"needs {self.need_gib:.1f} GiB per device ({parts} GiB in all), has {self.capacity_gib:.1f} GiB"


def device_capacity_gib(instance: InstanceSpec) -> float:
    """Usable memory of one device, GiB: ``device_memory x utilisation - reserve``."""
    eff = _efficiency(instance)
    return instance.device_memory_gib * eff.memory_utilisation - eff.memory_reserve_gib


def serving_memory(
    model: ModelSpec, instance: InstanceSpec, prompt_tokens: int, output_tokens: int, concurrency: int
) -> MemoryFit:
    """Serving memory on one device: BF16 weights + KV cache for ``concurrency`` sequences of
    ``prompt + output`` tokens + prefill workspace, split over the instance's devices.
    """
    weights = weight_bytes(model)
    kv = concurrency * kv_cache_bytes(model, prompt_tokens + output_tokens)
    workspace = (
        min(concurrency * prompt_tokens, PREFILL_CHUNK_TOKENS)
        * model.hidden_size
        * BYTES_BF16
        * SERVING_WORKSPACE_FACTOR
        + concurrency * model.vocab_size_padded * BYTES_FP32
    )
    need = (weights + kv + workspace) / instance.devices / GIB
    parts = {"weights": weights / GIB, "kv_cache": kv / GIB, "workspace": workspace / GIB}
    return MemoryFit(need, device_capacity_gib(instance), parts)


@dataclass(frozen=True, slots=True)
class TrainingWorkload:
    """What one training job processes.

    Attributes:
        examples: training examples, count.
        eval_examples: held-out examples, count.
        prompt_tokens: prompt length, tokens.
        output_tokens: reference answer length, tokens.
        epochs: passes over the training set.
        rationale_tokens: teacher-written reasoning per example in injection, tokens.
        attempts: teacher generations per example in injection (re-sampling failed verifications).
    """

    examples: int
    eval_examples: int
    prompt_tokens: int
    output_tokens: int
    epochs: float = DEFAULT_EPOCHS
    rationale_tokens: int = RATIONALE_TOKENS
    attempts: float = GENERATION_ATTEMPTS

    def sequence_tokens(self, mode: Mode) -> int:
        """Tokens of one training sequence: prompt + answer (+ rationale in injection)."""
        extra = self.rationale_tokens if mode == "injection" else 0
        return self.prompt_tokens + self.output_tokens + extra

    def train_tokens(self, mode: Mode) -> float:
        """Tokens processed by training, summed over epochs."""
        return float(self.examples * self.sequence_tokens(mode) * self.epochs)


def training_flops(
    student: ModelSpec,
    teacher: ModelSpec,
    mode: Mode,
    workload: TrainingWorkload,
    placement: TeacherPlacement = "colocated",
) -> float:
    """FLOPs of the training passes: ``tokens x (6 N_s + 2 N_t)`` (alignment, teacher ``colocated``: its
    forward every epoch), ``tokens x 6 N_s + tokens / epochs x 2 N_t`` (alignment, ``topk_cache``: the teacher
    runs once, before training) or ``tokens x 6 N_s`` (injection, or an ``external`` teacher: its work is done
    elsewhere and timed by :func:`stratos.planner.external.api_usage`)."""
    tokens = workload.train_tokens(mode)
    flops = tokens * 6.0 * student.params
    if mode == "alignment" and placement != "external":
        teacher_tokens = tokens if placement == "colocated" else tokens / workload.epochs
        flops += teacher_tokens * 2.0 * teacher.params
    return flops


def _batch_that_fits(weight_bytes_: float, kv_bytes_per_sequence: float, instance: InstanceSpec) -> int:
    """Sequences whose KV cache fits beside the weights on ``instance``, capped at the tier's generation
    batch; 0 when not even one fits."""
    free = device_capacity_gib(instance) * GIB * instance.devices - weight_bytes_
    if free < kv_bytes_per_sequence:
        return 0
    return min(_efficiency(instance).generation_batch, int(free // max(kv_bytes_per_sequence, 1.0)))


def generation_batch(model: ModelSpec, instance: InstanceSpec, sequence_tokens: int) -> int:
    """Sequences of ``sequence_tokens`` tokens ``model`` generates together on ``instance``: the tier's
    generation batch, fewer when their KV cache would not fit beside the weights, 0 when one does not fit."""
    return _batch_that_fits(weight_bytes(model), kv_cache_bytes(model, sequence_tokens), instance)


def generation_seconds(
    model: ModelSpec, instance: InstanceSpec, sequences: float, prompt_tokens: int, new_tokens: int
) -> float:
    """Time for ``model`` to generate ``new_tokens`` after each of ``sequences`` prompts, seconds.

    Batched at :func:`generation_batch` (at least 1; whether even that fits is the memory check's job):
    per batch, the prefills then ``new_tokens`` decode steps.
    """
    if sequences <= 0 or new_tokens <= 0:
        return 0.0
    batch = max(1, generation_batch(model, instance, prompt_tokens + new_tokens))
    per_batch = batch * prefill_seconds(model, instance, prompt_tokens) + new_tokens * decode_step_seconds(
        model, instance, batch, prompt_tokens + new_tokens / 2.0
    )
    return sequences / batch * per_batch


@dataclass(frozen=True, slots=True)
class TrainingEstimate:
    """Predicted training job, by part.

    Attributes:
        hours: wall time (= billed time), hours.
        train_hours: the optimiser passes, hours.
        generation_hours: the teacher writing injection data, hours (0 for alignment).
        eval_hours: the before/after evaluations and the teacher probe, hours.
        flops: FLOPs of the optimiser passes.
    """

    hours: float
    train_hours: float
    generation_hours: float
    eval_hours: float
    flops: float


def training_seconds(flops: float, instance: InstanceSpec, nodes: int = 1) -> float:
    """Optimiser passes of ``flops`` FLOPs on ``nodes`` instances, seconds: ``flops / (peak x MFU)`` on one,
    ``flops / (nodes x peak x MFU x INTER_NODE_EFFICIENCY)`` on several."""
    scale = 1.0 if nodes == 1 else nodes * INTER_NODE_EFFICIENCY
    return flops / (peak_flops(instance) * scale * _efficiency(instance).training_mfu)


def injection_generation_seconds(teacher: ModelSpec, instance: InstanceSpec, workload: TrainingWorkload) -> float:
    """The teacher writing rationale + answer for every example (``attempts`` tries each), seconds."""
    return generation_seconds(
        teacher,
        instance,
        workload.examples * workload.attempts,
        workload.prompt_tokens,
        workload.rationale_tokens + workload.output_tokens,
    )


def eval_seconds(model: ModelSpec, instance: InstanceSpec, workload: TrainingWorkload, passes: float) -> float:
    """``passes`` generations over the eval set by ``model``, seconds (student: 2 passes, teacher: 1)."""
    return generation_seconds(
        model, instance, passes * workload.eval_examples, workload.prompt_tokens, workload.output_tokens
    )


def training_hours(
    train_s: float, generation_s: float, eval_s: float, startup_hours: float = TRAINING_STARTUP_HOURS
) -> float:
    """Job wall time from its parts, hours: startup + (training + generation + evaluation) seconds / 3600
    (``startup_hours``: :data:`TRAINING_STARTUP_HOURS` for a SageMaker job)."""
    return startup_hours + (train_s + generation_s + eval_s) / 3600.0


def training_estimate(
    student: ModelSpec,
    teacher: ModelSpec,
    mode: Mode,
    instance: InstanceSpec,
    workload: TrainingWorkload,
    parallelism: ParallelismPlan | None = None,
    startup_hours: float = TRAINING_STARTUP_HOURS,
) -> TrainingEstimate:
    """Training wall time of one job (see the module docstring for the formula): on ``parallelism.nodes``
    instances with its teacher placement, or one instance with the teacher colocated when ``parallelism`` is
    None. Generation and evaluation are timed on one instance (not spread over nodes: conservative).
    ``startup_hours``: the job's start (image, models, first step); a local process starts in seconds."""
    placement = "colocated" if parallelism is None else parallelism.placement_for(mode)
    flops = training_flops(student, teacher, mode, workload, placement)
    train_s = training_seconds(flops, instance, 1 if parallelism is None else parallelism.nodes)
    gen_s = injection_generation_seconds(teacher, instance, workload) if mode == "injection" else 0.0
    eval_s = eval_seconds(student, instance, workload, 2.0) + eval_seconds(teacher, instance, workload, 1.0)
    hours = training_hours(train_s, gen_s, eval_s, startup_hours)
    return TrainingEstimate(hours, train_s / 3600.0, gen_s / 3600.0, eval_s / 3600.0, flops)


# --------------------------------------------------------------------------------------------------------
# Managed spot training.


def spot_overhead_fraction(
    interruptions_per_hour: float,
    nodes: int = 1,
    checkpoint_interval_minutes: float = SPOT_CHECKPOINT_INTERVAL_MINUTES,
    restart_minutes: float = SPOT_RESTART_MINUTES,
) -> float:
    """Expected extra wall time of a managed spot job, as a fraction of its uninterrupted (on-demand) time.

    ``nodes x interruptions_per_hour x (checkpoint_interval_minutes / 2 + restart_minutes) / 60``: each
    interruption (per instance-hour, any of ``nodes`` instances) loses on average half a checkpoint interval of
    work and the restart time. E.g. g5 (0.05 / h), one node, 10 min interval, 5 min restart:
    ``0.05 x 10 / 60 = 0.0083`` (0.8 % longer).

    Raises:
        ValueError: a negative rate or time, or ``nodes < 1``.
    """
    if interruptions_per_hour < 0 or checkpoint_interval_minutes < 0 or restart_minutes < 0 or nodes < 1:
        raise ValueError("interruption rate and times must be >= 0 and nodes >= 1")
    return nodes * interruptions_per_hour * (checkpoint_interval_minutes / 2.0 + restart_minutes) / 60.0


@dataclass(frozen=True, slots=True)
class SpotEstimate:
    """A training job priced on managed spot next to the same job on-demand.

    Attributes:
        hours: expected wall time on spot (interruptions included), hours.
        cost_usd: expected spot cost, USD.
        usd_per_hour: the effective spot rate of the job, USD/hour (``cost_usd / hours``).
        on_demand_hours: the same job uninterrupted, hours.
        on_demand_cost_usd: the same job on-demand, USD.
        on_demand_usd_per_hour: on-demand price of the job (instance price x nodes), USD/hour.
        savings_fraction: the family's expected saving, fraction of the on-demand cost of the spot hours.
        overhead_fraction: :func:`spot_overhead_fraction`.
    """

    hours: float
    cost_usd: float
    usd_per_hour: float
    on_demand_hours: float
    on_demand_cost_usd: float
    on_demand_usd_per_hour: float
    savings_fraction: float
    overhead_fraction: float

    @property
    def saving_usd(self) -> float:
        """Expected saving against on-demand, USD (negative if the overhead ate the discount)."""
        return self.on_demand_cost_usd - self.cost_usd

    @property
    def cheaper(self) -> bool:
        """Spot is expected to cost less than on-demand."""
        return self.cost_usd < self.on_demand_cost_usd


def spot_estimate(
    on_demand_hours: float,
    on_demand_usd_per_hour: float,
    savings: float,
    interruptions_per_hour: float,
    nodes: int = 1,
    checkpoint_interval_minutes: float = SPOT_CHECKPOINT_INTERVAL_MINUTES,
    restart_minutes: float = SPOT_RESTART_MINUTES,
) -> SpotEstimate:
    """The job of ``on_demand_hours`` on managed spot (see the module docstring's formula).

    Args:
        on_demand_hours: uninterrupted wall time (:func:`training_hours`), hours.
        on_demand_usd_per_hour: on-demand price of the whole job (instance price x ``nodes``), USD/hour.
        savings: the family's expected saving, fraction 0..1 (:class:`~stratos.planner.catalog.SpotFigures`).
        interruptions_per_hour: the family's interruptions per instance-hour.
        nodes: instances the job spans.
        checkpoint_interval_minutes, restart_minutes: see :func:`spot_overhead_fraction`.

    Raises:
        ValueError: ``savings`` outside [0, 1], or see :func:`spot_overhead_fraction`.
    """
    if not 0.0 <= savings <= 1.0:
        raise ValueError(f"savings must be a fraction in [0, 1], got {savings}")
    overhead = spot_overhead_fraction(interruptions_per_hour, nodes, checkpoint_interval_minutes, restart_minutes)
    hours = on_demand_hours * (1.0 + overhead)
    rate = on_demand_usd_per_hour * (1.0 - savings)
    return SpotEstimate(
        hours=hours,
        cost_usd=hours * rate,
        usd_per_hour=rate,
        on_demand_hours=on_demand_hours,
        on_demand_cost_usd=on_demand_hours * on_demand_usd_per_hour,
        on_demand_usd_per_hour=on_demand_usd_per_hour,
        savings_fraction=savings,
        overhead_fraction=overhead,
    )


# --------------------------------------------------------------------------------------------------------
# Training memory and the parallelism plan.

#: How a memory term scales with the plan: ``state`` is divided by the world size under FSDP (a full replica
#: on every device under DDP or on a single device); ``device`` is held once by every device; ``sequence`` is
#: held by every device once per sequence of its micro-batch; ``generated`` once per sequence of the
#: generation batch (:func:`plan_generation_batch`).
Scaling = Literal["state", "device", "sequence", "generated"]
#: One named term of a memory phase: ``(name, bytes, scaling)``.
MemoryTerm = tuple[str, float, Scaling]
#: One phase's sums by scaling, bytes: ``(state, device, sequence, generated)``; its per-device need is
#: ``state / shard + device + micro_batch x sequence + generation_batch x generated``.
Coefficients = tuple[float, float, float, float]

#: Teacher placements the planner tries, in order of preference, per mode (the contract's module docstring
#: says what each means): alignment keeps the teacher beside the student when that fits (the live teacher is
#: the full distribution; the top-k cache drops its tail), injection only ever generates with it.
PLACEMENTS: dict[Mode, tuple[TeacherPlacement, ...]] = {
    "alignment": ("colocated", "topk_cache"),
    "injection": ("generation_only",),
}
#: The only placement of an external teacher (Bedrock, a SageMaker endpoint), in either mode.
EXTERNAL_PLACEMENTS: tuple[TeacherPlacement, ...] = ("external",)


def placements(mode: Mode, teacher: ModelSpec) -> tuple[TeacherPlacement, ...]:
    """Teacher placements the planner tries for ``mode``: :data:`PLACEMENTS`, or ``external`` for a teacher the
    job calls instead of loading."""
    return EXTERNAL_PLACEMENTS if teacher.access is not None else PLACEMENTS[mode]


_STRATEGIES: tuple[Strategy, ...] = ("single_device", "ddp", "fsdp_full_shard")


@dataclass(frozen=True, slots=True)
class TrainingMemoryTerms:
    """The instance- and plan-independent terms of training memory, bytes (:func:`memory_phases` arranges
    them into phases for one strategy and teacher placement).

    Attributes:
        mode: alignment or injection.
        student_state_bytes: student weights, gradients and AdamW moments
            (:data:`TRAINING_STATE_BYTES_PER_PARAM`).
        student_bucket_bytes: DDP's gradient buckets (:data:`DDP_BUCKET_BYTES_PER_PARAM`).
        student_unsharded_bytes: the student's FSDP units unsharded at once: the root unit (embedding, LM head)
            and :data:`FSDP_PREFETCH_UNITS` decoder layers, at :data:`FSDP_UNSHARDED_STUDENT_BYTES_PER_PARAM`.
        student_activation_bytes: one sequence's activations with gradient checkpointing: every layer's
            BF16 input kept, one layer recomputed (:data:`ACTIVATION_BYTES_PER_TOKEN_HIDDEN`).
        student_logit_bytes: one sequence's FP32 student logits and their gradient
            (:data:`STUDENT_LOGIT_COPIES`).
        teacher_weight_bytes: the BF16 teacher.
        teacher_unsharded_bytes: the teacher's FSDP units unsharded at once (BF16, forward only).
        teacher_activation_bytes: one sequence's activations of one teacher layer (forward, no grad).
        teacher_logit_bytes: one FP32 copy of one sequence's teacher logits.
        generation_kv_bytes: KV cache of one sequence the teacher generates (evaluation and probe; the
            rationales in injection).
        coefficients: each phase's :data:`Coefficients` per ``(strategy, placement)`` valid for the mode: the
            planner's hot path (:func:`parallelism_for`) does arithmetic on these only.
    """

    mode: Mode
    student_state_bytes: float
    student_bucket_bytes: float
    student_unsharded_bytes: float
    student_activation_bytes: float
    student_logit_bytes: float
    teacher_weight_bytes: float
    teacher_unsharded_bytes: float
    teacher_activation_bytes: float
    teacher_logit_bytes: float
    generation_kv_bytes: float
    coefficients: Mapping[tuple[Strategy, TeacherPlacement], tuple[Coefficients, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )


def _unsharded_params(model: ModelSpec) -> float:
    """Parameters of ``model``'s FSDP units unsharded at once on one device: the root unit (what the per-layer
    wrap policy leaves outside the decoder layers: the embedding, and the LM head when untied) stays gathered
    for the whole step, plus :data:`FSDP_PREFETCH_UNITS` decoder layers."""
    root = model.embedding_params * (1 if model.tied_embeddings else 2)
    return float(root + FSDP_PREFETCH_UNITS * model.body_params / model.layers)


def training_memory_terms(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, workload: TrainingWorkload
) -> TrainingMemoryTerms:
    """The terms of :func:`plan_memory` that depend on neither the instance nor the plan."""
    seq = workload.sequence_tokens(mode)
    base = TrainingMemoryTerms(
        mode=mode,
        student_state_bytes=float(TRAINING_STATE_BYTES_PER_PARAM * student.params),
        student_bucket_bytes=float(DDP_BUCKET_BYTES_PER_PARAM * student.params),
        student_unsharded_bytes=_unsharded_params(student) * FSDP_UNSHARDED_STUDENT_BYTES_PER_PARAM,
        student_activation_bytes=float(
            seq * student.hidden_size * student.layers * BYTES_BF16
            + seq * student.hidden_size * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
        ),
        student_logit_bytes=float(seq * student.vocab_size_padded * BYTES_FP32 * STUDENT_LOGIT_COPIES),
        teacher_weight_bytes=weight_bytes(teacher),
        teacher_unsharded_bytes=_unsharded_params(teacher) * FSDP_UNSHARDED_TEACHER_BYTES_PER_PARAM,
        teacher_activation_bytes=float(seq * teacher.hidden_size * ACTIVATION_BYTES_PER_TOKEN_HIDDEN),
        teacher_logit_bytes=float(seq * teacher.vocab_size_padded * BYTES_FP32),
        generation_kv_bytes=kv_cache_bytes(teacher, seq),
    )
    coefficients = {
        (strategy, placement): tuple(_sums(items) for items in memory_phases(base, strategy, placement).values())
        for strategy in _STRATEGIES
        for placement in placements(mode, teacher)
    }
    return replace(base, coefficients=coefficients)


def memory_phases(
    terms: TrainingMemoryTerms, strategy: Strategy, placement: TeacherPlacement
) -> dict[str, tuple[MemoryTerm, ...]]:
    """The job's memory phases for one strategy and teacher placement; the peak is the largest phase.

    * ``training`` — the student's states (a replica under DDP / single device, a shard under FSDP), DDP's
      buckets or FSDP's unsharded units, and per sequence of the micro-batch its activations and logits;
      ``colocated`` adds the teacher's BF16 weights (sharded like the student under FSDP), one teacher layer's
      activations and the teacher's logits per sequence.
    * ``teacher_topk`` (``topk_cache`` only) — the teacher alone filling the top-k cache: its weights, one
      layer's activations and :data:`TEACHER_TOPK_LOGIT_COPIES` logit copies per sequence; freed before the
      student trains, so its peak and the student's do not add.
    * ``teacher_generation`` (every placement but ``external``) — the teacher generating (evaluation and probe in
      every mode; the training data in injection): its weights and the KV cache of each sequence of the
      generation batch.
    * ``external`` placement: the student's ``training`` phase only (the teacher runs elsewhere).

    Returns:
        Phase name -> its named terms (:data:`MemoryTerm`), bytes before the plan's scaling.
    """
    fsdp = strategy == "fsdp_full_shard"
    student: list[MemoryTerm] = [("student_states", terms.student_state_bytes, "state")]
    if strategy == "ddp":
        student.append(("ddp_buckets", terms.student_bucket_bytes, "device"))
    if fsdp:
        student.append(("student_fsdp_units", terms.student_unsharded_bytes, "device"))
    student += [
        ("activations", terms.student_activation_bytes, "sequence"),
        ("student_logits", terms.student_logit_bytes, "sequence"),
    ]
    teacher: list[MemoryTerm] = [("teacher_weights", terms.teacher_weight_bytes, "state")]
    if fsdp:
        teacher.append(("teacher_fsdp_units", terms.teacher_unsharded_bytes, "device"))
    generation = (*teacher, ("teacher_kv_cache", terms.generation_kv_bytes, "generated"))
    teacher_act: MemoryTerm = ("teacher_activations", terms.teacher_activation_bytes, "sequence")
    if placement == "colocated":
        colocated = (*student, *teacher, teacher_act, ("teacher_logits", terms.teacher_logit_bytes, "sequence"))
        return {"training": colocated, "teacher_generation": generation}
    if placement == "external":
        return {"training": tuple(student)}
    if placement == "topk_cache":
        topk_logits = terms.teacher_logit_bytes * TEACHER_TOPK_LOGIT_COPIES
        forward = (*teacher, teacher_act, ("teacher_logits", topk_logits, "sequence"))
        return {"teacher_topk": forward, "training": tuple(student), "teacher_generation": generation}
    return {"training": tuple(student), "teacher_generation": generation}


def _sums(items: tuple[MemoryTerm, ...]) -> Coefficients:
    state = sum(b for _, b, scaling in items if scaling == "state")
    device = sum(b for _, b, scaling in items if scaling == "device")
    sequence = sum(b for _, b, scaling in items if scaling == "sequence")
    generated = sum(b for _, b, scaling in items if scaling == "generated")
    return (state, device, sequence, generated)


def _scaled(bytes_: float, scaling: Scaling, shard: int, micro_batch: int, generation_batch: int) -> float:
    if scaling == "state":
        return bytes_ / shard
    if scaling == "sequence":
        return bytes_ * micro_batch
    return bytes_ * generation_batch if scaling == "generated" else bytes_


def plan_memory(
    student: ModelSpec,
    teacher: ModelSpec,
    mode: Mode,
    workload: TrainingWorkload,
    plan: ParallelismPlan,
    instance: InstanceSpec,
) -> MemoryFit:
    """Per-device peak memory of training ``student`` from ``teacher`` under ``plan``, against the usable
    memory of one device of ``instance``.

    The peak is the largest of the phases of :func:`memory_phases` for the plan's strategy and the teacher
    placement the job will use for ``mode`` (:meth:`ParallelismPlan.placement_for`). In a phase, ``state``
    terms (student weights, gradients, AdamW moments; the teacher's weights) are divided by the world size
    under ``fsdp_full_shard`` and held whole by every device under ``ddp`` / ``single_device``; ``device``
    terms (DDP buckets, FSDP's unsharded units) are held by every device; ``sequence`` terms (activations,
    logits) are multiplied by the micro-batch, ``generated`` terms (the teacher's KV cache per generated
    sequence) by :func:`plan_generation_batch`. Gradient checkpointing is assumed (``plan.gradient_checkpointing``
    is the container's switch; the planner always sets it).

    Returns:
        :class:`MemoryFit`: ``need_gib`` the peak per device, ``parts_gib`` the peak phase's terms per
        device, ``phase`` its name.
    """
    terms = training_memory_terms(student, teacher, mode, workload)
    placement = plan.placement_for(mode)
    shard = plan.world_size if plan.strategy == "fsdp_full_shard" else 1
    capacity = device_capacity_gib(instance)
    coefficients = _coefficients(terms, plan.strategy, placement)
    generation_batch = max(1, _generation_batch(coefficients, shard, plan.micro_batch, capacity * GIB))
    peak: tuple[str, float, dict[str, float]] | None = None
    for phase, items in memory_phases(terms, plan.strategy, placement).items():
        parts = {
            name: _scaled(b, scaling, shard, plan.micro_batch, generation_batch) / GIB for name, b, scaling in items
        }
        need = sum(parts.values())
        if peak is None or need > peak[1]:
            peak = (phase, need, parts)
    assert peak is not None
    return MemoryFit(peak[1], capacity, peak[2], peak[0])


def plan_generation_batch(
    student: ModelSpec,
    teacher: ModelSpec,
    mode: Mode,
    workload: TrainingWorkload,
    plan: ParallelismPlan,
    instance: InstanceSpec,
) -> int:
    """Sequences the job should generate together under ``plan`` (its ``eval_batch_size``): the largest power
    of two <= :data:`GENERATION_BATCH_SEQUENCES` whose KV cache fits beside the teacher on one device of
    ``instance`` (1 when even that does not: :func:`plan_memory` then says the plan does not fit)."""
    terms = training_memory_terms(student, teacher, mode, workload)
    shard = plan.world_size if plan.strategy == "fsdp_full_shard" else 1
    coefficients = _coefficients(terms, plan.strategy, plan.placement_for(mode))
    capacity = device_capacity_gib(instance) * GIB
    return max(1, _generation_batch(coefficients, shard, plan.micro_batch, capacity))


def _coefficients(
    terms: TrainingMemoryTerms, strategy: Strategy, placement: TeacherPlacement
) -> tuple[Coefficients, ...]:
    cached = terms.coefficients.get((strategy, placement))
    if cached is not None:
        return cached
    return tuple(_sums(items) for items in memory_phases(terms, strategy, placement).values())


def training_memory(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, instance: InstanceSpec, workload: TrainingWorkload
) -> MemoryFit:
    """Training memory on one device of ONE ``instance`` sharded over all its devices (``fsdp_full_shard``;
    ``single_device`` on a one-device instance), micro-batch of one sequence, the mode's first teacher
    placement (:data:`PLACEMENTS`): :func:`plan_memory` of that plan. The planner itself uses
    :func:`choose_parallelism`."""
    devices = instance.devices
    plan = ParallelismPlan(
        strategy="fsdp_full_shard" if devices > 1 else "single_device",
        devices_per_node=devices,
        teacher_placement=placements(mode, teacher)[0],
    )
    return plan_memory(student, teacher, mode, workload, plan, instance)


def _need(coefficients: tuple[Coefficients, ...], shard: int, micro_batch: int, generation_batch: int = 1) -> float:
    """Peak bytes per device over the phases' :data:`Coefficients`."""
    peak = 0.0
    for state, device, sequence, generated in coefficients:  # a loop: the planner's hot path
        need = state / shard + device + micro_batch * sequence + generation_batch * generated
        if need > peak:
            peak = need
    return peak


def _pow2_at_most(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _micro_batch(coefficients: tuple[Coefficients, ...], shard: int, world: int, capacity: float) -> int:
    """The largest power of two <= :data:`MAX_MICRO_BATCH` whose peak fits ``capacity`` bytes and whose
    ``micro_batch x world`` does not overshoot :data:`TARGET_GLOBAL_BATCH_SEQUENCES` (more sequences per
    step than the target only when one per device already does); 0 when one sequence does not fit (with one
    generated sequence: the generation batch is sized after, :func:`_generation_batch`)."""
    micro_batch = min(MAX_MICRO_BATCH, _pow2_at_most(TARGET_GLOBAL_BATCH_SEQUENCES // world))
    while micro_batch >= 1:
        if _need(coefficients, shard, micro_batch) <= capacity:
            return micro_batch
        micro_batch //= 2
    return 0


def _generation_batch(coefficients: tuple[Coefficients, ...], shard: int, micro_batch: int, capacity: float) -> int:
    """The largest power of two <= :data:`GENERATION_BATCH_SEQUENCES` that fits ``capacity`` bytes; 0 when
    one sequence does not."""
    generation_batch = _pow2_at_most(GENERATION_BATCH_SEQUENCES)
    while generation_batch >= 1:
        if _need(coefficients, shard, micro_batch, generation_batch) <= capacity:
            return generation_batch
        generation_batch //= 2
    return 0


def _fewest_nodes(coefficients: tuple[Coefficients, ...], devices: int, capacity: float) -> int | None:
    """Fewest nodes (2 ..:data:`MAX_NODES`) over which ``fsdp_full_shard`` fits one sequence per device (one
    trained, one generated), or None. Each phase needs ``state / world + device + sequence + generated <=
    capacity``, so world >= state / (capacity - device - sequence - generated); checked directly afterwards
    (rounding)."""
    world = 1.0
    for state, device, sequence, generated in coefficients:
        room = capacity - device - sequence - generated
        if room <= 0:
            return None
        world = max(world, state / room)
    nodes = max(2, math.ceil(world / devices))
    while nodes <= MAX_NODES and _need(coefficients, nodes * devices, 1) > capacity:
        nodes += 1
    return nodes if nodes <= MAX_NODES else None


def parallelism_for(terms: TrainingMemoryTerms, instance: InstanceSpec) -> ParallelismPlan | None:
    """:func:`choose_parallelism` from precomputed terms (the planner computes them once per pair and mode)."""
    capacity = device_capacity_gib(instance) * GIB
    devices = instance.devices
    placements = tuple(dict.fromkeys(placement for _, placement in terms.coefficients))  # in preference order
    one_node: tuple[Strategy, ...] = ("single_device",) if devices == 1 else ("ddp", "fsdp_full_shard")
    for placement in placements:
        for strategy in one_node:
            coefficients = terms.coefficients[(strategy, placement)]
            shard = devices if strategy == "fsdp_full_shard" else 1
            micro_batch = _micro_batch(coefficients, shard, devices, capacity)
            if micro_batch:
                return _parallelism(coefficients, strategy, 1, devices, micro_batch, placement, capacity)
    best: tuple[int, TeacherPlacement] | None = None
    for placement in placements:
        nodes = _fewest_nodes(terms.coefficients[("fsdp_full_shard", placement)], devices, capacity)
        if nodes is not None and (best is None or nodes < best[0]):
            best = (nodes, placement)
    if best is None:
        return None
    nodes, placement = best
    coefficients = terms.coefficients[("fsdp_full_shard", placement)]
    world = nodes * devices
    micro_batch = _micro_batch(coefficients, world, world, capacity)
    return _parallelism(coefficients, "fsdp_full_shard", nodes, devices, micro_batch, placement, capacity)


def _parallelism(
    coefficients: tuple[Coefficients, ...],
    strategy: Strategy,
    nodes: int,
    devices: int,
    micro_batch: int,
    placement: TeacherPlacement,
    capacity: float,
) -> ParallelismPlan:
    world = nodes * devices
    shard = world if strategy == "fsdp_full_shard" else 1
    generation_batch = _generation_batch(coefficients, shard, micro_batch, capacity)
    return ParallelismPlan(
        strategy=strategy,
        nodes=nodes,
        devices_per_node=devices,
        micro_batch=micro_batch,
        grad_accum=max(1, round(TARGET_GLOBAL_BATCH_SEQUENCES / (micro_batch * world))),
        gradient_checkpointing=True,
        teacher_placement=placement,
        estimated_peak_gib=round(_need(coefficients, shard, micro_batch, generation_batch) / GIB, 3),
        device_capacity_gib=round(capacity / GIB, 3),
    )


def choose_parallelism(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, instance: InstanceSpec, workload: TrainingWorkload
) -> ParallelismPlan | None:
    """The cheapest-to-run parallelism plan that fits ``instance`` (by :func:`plan_memory`), or None when
    none does (the instance type is infeasible for this pair and mode).

    Order of preference: fewer nodes first (the job is billed per node); on one node, the mode's teacher
    placements in order (:data:`PLACEMENTS`: ``colocated`` before ``topk_cache`` in alignment), and for each
    ``single_device`` (a one-device instance), else ``ddp`` when a full replica fits every device, else
    ``fsdp_full_shard`` over the node's devices; then ``fsdp_full_shard`` over the fewest nodes, 2 ..
    :data:`~stratos_contract.parallelism.MAX_NODES`, that fit (``colocated`` when it needs no more nodes than
    ``topk_cache``). The micro-batch is the largest power of two <= :data:`MAX_MICRO_BATCH` that fits without
    overshooting :data:`TARGET_GLOBAL_BATCH_SEQUENCES`; ``grad_accum`` brings the global batch near that
    target. The teacher generates in batches of :func:`plan_generation_batch` sequences (PrepareTrainingJob
    sends it as ``eval_batch_size``). A CPU instance has one device per node. Gradient checkpointing is always
    on (the memory model assumes it).
    """
    return parallelism_for(training_memory_terms(student, teacher, mode, workload), instance)


def capacity_ratio(teacher: ModelSpec, student: ModelSpec) -> float:
    """Teacher parameters over student parameters."""
    return teacher.params / student.params


def expected_accuracy(
    student_prior: float,
    teacher_prior: float,
    mode: Mode,
    ratio: float,
    train_examples: int,
    data_source: DataSource,
) -> float:
    """Predicted accuracy of the distilled student, fraction 0..1 (see the module docstring).

    Args:
        student_prior: the student's accuracy before distillation, 0..1.
        teacher_prior: the teacher's accuracy, 0..1.
        mode: ``alignment`` or ``injection``.
        ratio: teacher/student parameter ratio (:func:`capacity_ratio`).
        train_examples: training examples, count.
        data_source: the spec's data source (sets the verification lift of injection).
    """
    data_factor = 1.0 - math.exp(-train_examples / DATA_HALF_EXAMPLES)
    gap_factor = 1.0 / (1.0 + CAPACITY_GAP_BETA[mode] * max(0.0, math.log10(ratio / CAPACITY_GAP_R0)))
    target = teacher_prior
    if mode == "injection":
        target = teacher_prior + (1.0 - teacher_prior) * VERIFICATION_LIFT[data_source]
    gain = KD_GAIN[mode] * data_factor * gap_factor * max(0.0, target - student_prior)
    return min(1.0, student_prior + gain)
