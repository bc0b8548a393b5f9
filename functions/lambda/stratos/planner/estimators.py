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
    alignment:  flops = tokens x (6 N_student + 2 N_teacher)    student fwd+bwd, teacher fwd (logits)
    injection:  flops = tokens x 6 N_student, plus the teacher generating rationale + answer for each
                example (``attempts`` tries each: failed verifications are re-sampled), timed with the
                same roofline as serving at a generation batch
    hours = startup + flops / (peak_flops x MFU) / 3600 + generation + evaluation

  Evaluation: the student generates on the eval set before and after training, the teacher once (the
  coverage probe). Training memory (per device, FSDP/ZeRO-3 sharding within one instance, Rajbhandari et al.
  2020): 16 bytes/param for the student's mixed-precision AdamW state, 2 bytes/param for a BF16 teacher,
  plus activations with gradient checkpointing and the FP32 logits the loss needs.

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
from dataclasses import dataclass
from typing import Literal

from stratos.planner.catalog import GIB, InstanceSpec, ModelSpec

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
TRAINING_STARTUP_HOURS = 10 / 60
"""Billable start of a training job: image pull, model download, first step; hours (our estimate)."""
DEFAULT_EPOCHS = 3
"""Passes over the training set (the usual setting for task-specific distillation)."""
RATIONALE_TOKENS = 256
"""Tokens of teacher-written reasoning per example in Knowledge Injection (our estimate)."""
GENERATION_ATTEMPTS = 1.5
"""Teacher generations per training example in injection: failed verifications are re-sampled."""
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
        parts_gib: the terms of ``need_gib`` summed over the instance (weights, KV cache, ...).
    """

    need_gib: float
    capacity_gib: float
    parts_gib: dict[str, float]

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
    epochs: int = DEFAULT_EPOCHS
    rationale_tokens: int = RATIONALE_TOKENS
    attempts: float = GENERATION_ATTEMPTS

    def sequence_tokens(self, mode: Mode) -> int:
        """Tokens of one training sequence: prompt + answer (+ rationale in injection)."""
        extra = self.rationale_tokens if mode == "injection" else 0
        return self.prompt_tokens + self.output_tokens + extra

    def train_tokens(self, mode: Mode) -> float:
        """Tokens processed by training, summed over epochs."""
        return float(self.examples * self.sequence_tokens(mode) * self.epochs)


def training_flops(student: ModelSpec, teacher: ModelSpec, mode: Mode, workload: TrainingWorkload) -> float:
    """FLOPs of the training passes: ``tokens x (6 N_s + 2 N_t)`` (alignment) or ``tokens x 6 N_s`` (injection)."""
    per_token = 6.0 * student.params + (2.0 * teacher.params if mode == "alignment" else 0.0)
    return workload.train_tokens(mode) * per_token


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


def training_seconds(flops: float, instance: InstanceSpec) -> float:
    """Optimiser passes of ``flops`` FLOPs on ``instance``, seconds: ``flops / (peak x MFU)``."""
    return flops / (peak_flops(instance) * _efficiency(instance).training_mfu)


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


def training_hours(train_s: float, generation_s: float, eval_s: float) -> float:
    """Job wall time from its parts, hours: startup + (training + generation + evaluation) seconds / 3600."""
    return TRAINING_STARTUP_HOURS + (train_s + generation_s + eval_s) / 3600.0


def training_estimate(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, instance: InstanceSpec, workload: TrainingWorkload
) -> TrainingEstimate:
    """Training wall time on one instance (see the module docstring for the formula)."""
    flops = training_flops(student, teacher, mode, workload)
    train_s = training_seconds(flops, instance)
    gen_s = injection_generation_seconds(teacher, instance, workload) if mode == "injection" else 0.0
    eval_s = eval_seconds(student, instance, workload, 2.0) + eval_seconds(teacher, instance, workload, 1.0)
    hours = training_hours(train_s, gen_s, eval_s)
    return TrainingEstimate(hours, train_s / 3600.0, gen_s / 3600.0, eval_s / 3600.0, flops)


@dataclass(frozen=True, slots=True)
class TrainingMemoryTerms:
    """Instance-independent terms of the training memory need, bytes.

    Attributes:
        mode: alignment or injection.
        sharded_bytes: split over devices (student optimiser state; plus the teacher in alignment).
        per_device_bytes: held by every device (activations, logits).
        teacher_weight_bytes: the BF16 teacher (injection: generation runs alone, sharded).
        teacher_kv_bytes_per_sequence: KV cache per generated sequence (injection).
        parts_bytes: named terms for messages.
    """

    mode: Mode
    sharded_bytes: float
    per_device_bytes: float
    teacher_weight_bytes: float
    teacher_kv_bytes_per_sequence: float
    parts_bytes: dict[str, float]


def training_memory_terms(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, workload: TrainingWorkload
) -> TrainingMemoryTerms:
    """The terms of :func:`training_memory` that do not depend on the instance."""
    seq = workload.sequence_tokens(mode)
    logit_copies = 3 if mode == "alignment" else 2
    student_states = float(TRAINING_STATE_BYTES_PER_PARAM * student.params)
    activations = float(
        seq * student.hidden_size * student.layers * BYTES_BF16
        + seq * student.hidden_size * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
        + seq * student.vocab_size_padded * BYTES_FP32 * logit_copies
    )
    teacher_weights = weight_bytes(teacher)
    if mode == "alignment":
        teacher_act = float(seq * teacher.hidden_size * ACTIVATION_BYTES_PER_TOKEN_HIDDEN)
        parts = {"student_states": student_states, "teacher_weights": teacher_weights, "activations": activations}
        return TrainingMemoryTerms(
            mode, student_states + teacher_weights, activations + teacher_act, teacher_weights, 0.0, parts
        )
    kv = kv_cache_bytes(teacher, seq)
    parts = {"student_states": student_states, "activations": activations, "teacher_weights": teacher_weights}
    return TrainingMemoryTerms(mode, student_states, activations, teacher_weights, kv, parts)


def training_need_gib(terms: TrainingMemoryTerms, instance: InstanceSpec) -> float:
    """Per-device training memory need on ``instance``, GiB (see :func:`training_memory`)."""
    devices = instance.devices
    need = terms.sharded_bytes / devices + terms.per_device_bytes
    if terms.mode == "injection":
        batch = max(1, _batch_that_fits(terms.teacher_weight_bytes, terms.teacher_kv_bytes_per_sequence, instance))
        need = max(need, (terms.teacher_weight_bytes + batch * terms.teacher_kv_bytes_per_sequence) / devices)
    return need / GIB


def training_memory(
    student: ModelSpec, teacher: ModelSpec, mode: Mode, instance: InstanceSpec, workload: TrainingWorkload
) -> MemoryFit:
    """Training memory on one device (FSDP/ZeRO-3 over the instance's devices, micro-batch of one sequence).

    Student: 16 bytes/param of optimiser state, sharded; activations with gradient checkpointing (layer
    inputs + one layer recomputed) and FP32 logits (student, teacher and gradient in alignment; logits and
    gradient in injection), per device. Alignment adds the BF16 teacher (sharded) and its forward
    activations; injection instead needs the larger of training and the teacher generating alone (BF16
    weights + KV cache for the generation batch that fits, at least one sequence).
    """
    terms = training_memory_terms(student, teacher, mode, workload)
    parts = {k: v / GIB for k, v in terms.parts_bytes.items()}
    return MemoryFit(training_need_gib(terms, instance), device_capacity_gib(instance), parts)


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
