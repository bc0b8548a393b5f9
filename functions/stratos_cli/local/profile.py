"""The local instance profile: this machine as the planner sees an instance, from a short measurement, and what a
local run is predicted to measure on it.

A local run trains on this machine's CPU, not on the AWS instance its plan is priced for, so the plan's training
hours and p50 latency cannot be checked against what the run measures. The profile makes them checkable
(issue 16): a probe measures, in a subprocess running the training container's Python with the threads the
local training job uses (``STRATOS_THREADS`` = the cores):

* **training FLOP/s**: forward + backward passes under bf16 autocast (the local job's ``bf16=true``) of a
  config-built Llama with SmolLM2-135M's layer shape and vocabulary (2 of its 30 decoder layers, so the LM head
  weighs as it does in the 15-layer student), batch 4 x 128 tokens; FLOP/s = ``6 x params x tokens / s`` (the
  Kaplan et al. 2020 count the planner's estimators use);
* **memory bandwidth**: copying a 256 MiB tensor, bytes read + written per second;
* cores and memory with psutil.

:meth:`LocalProfile.instance` maps them to an :class:`~stratos.planner.catalog.InstanceSpec` of the ``cpu`` tier
whose estimates reproduce the measurements: ``device_bf16_tflops = training FLOP/s / MFU(cpu)`` and
``device_bandwidth_gbps = bandwidth / decode efficiency(cpu)`` (the tier's efficiency factors,
:data:`stratos.planner.estimators.EFFICIENCY`), so the estimators' ``flops / (peak x MFU)`` is the measured rate.
Its instance type is ``local:<machine>`` (the calibration key of a local run's training time and latency).

The profile is cached per machine in ``<STRATOS_HOME>/profiles/<machine>.json`` with its date and measured again
after :data:`PROFILE_MAX_AGE_DAYS`. ``python -m stratos_cli.local.profile [--json] [--force]`` prints it.

:func:`local_prediction` sizes the local run's own job on the profile: the chosen plan's teacher, student and
mode, with the hyperparameters the job really got (training examples, passes or ``max_steps``, sequence cap,
evaluation sizes, decoding budget, teacher rationales), started in :data:`LOCAL_STARTUP_S` instead of a SageMaker
job's 10 minutes, and calibrated by earlier local runs (:mod:`stratos.planner.calibration`). Its p50 latency is
the load test's on the local endpoint server, which generates one request at a time: ``concurrency x`` the
estimators' p50 of a single request (a batching server on AWS overlaps them instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psutil  # type: ignore[import-untyped]  # psutil ships no type information (no py.typed)
from pydantic import BaseModel, ConfigDict, Field

PROFILE_MAX_AGE_DAYS = 30
"""A cached profile older than this is measured again."""
LOCAL_STARTUP_S = 30.0
"""Seconds from starting the local training process to its first step: imports, the models from the local
cache, data (our estimate; a SageMaker job's start is 10 minutes: image pull and model download)."""
PROBE_TIMEOUT_S = 300.0
"""Longest the probe subprocess may take."""
#: The probe model: SmolLM2-135M's layer shape (hidden 576, 9 heads of 64, 3 KV heads, MLP 1,536, vocabulary
#: 49,152, tied embeddings) with 2 decoder layers.
PROBE_CONFIG: dict[str, Any] = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 2,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "max_position_embeddings": 2048,
}
PROBE_BATCH = (4, 128)
"""Sequences x tokens of each probe step."""
PROBE_STEPS = 3
"""Timed probe steps (after one untimed warm-up step)."""
BANDWIDTH_MIB = 256
"""Size of the tensor the bandwidth probe copies, MiB."""


class LocalProfile(BaseModel):
    """This machine, measured (the cached file's schema).

    Attributes:
        machine: the machine key (architecture, cores, memory, a hash of the CPU model and host name).
        measured_at: when the probe ran, UTC.
        cores: logical CPUs (the local training job's threads).
        memory_gib: physical memory, GiB.
        training_tflops: achieved forward + backward TFLOP/s of the probe, bf16 autocast.
        bandwidth_gbps: achieved copy bandwidth, GB/s (10^9 bytes read + written per second).
        startup_s: a local training process's start, s.
        probe: what the probe ran (model parameters, tokens per step, steps, seconds).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine: str
    measured_at: datetime
    cores: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    training_tflops: float = Field(gt=0)
    bandwidth_gbps: float = Field(gt=0)
    startup_s: float = Field(default=LOCAL_STARTUP_S, ge=0)
    probe: dict[str, Any] = Field(default_factory=dict)

    @property
    def instance_type(self) -> str:
        """``local:<machine>``: the name predictions and calibration use for this machine."""
        return f"local:{self.machine}"

    def instance(self) -> Any:
        """This machine as an :class:`~stratos.planner.catalog.InstanceSpec` (module docstring): one CPU device
        whose estimated training rate and decode bandwidth are the measured ones; no price."""
        from stratos.planner.catalog import InstanceSpec, Source
        from stratos.planner.estimators import EFFICIENCY

        cpu = EFFICIENCY["cpu"]
        source = Source(f"measured on this machine (stratos_cli.local.profile): {self.probe}", self.date)
        return InstanceSpec(
            instance_type=self.instance_type,
            family="local",
            accelerator=None,
            accelerator_count=0,
            tier="cpu",
            device_memory_gib=self.memory_gib,
            device_bandwidth_gbps=self.bandwidth_gbps / cpu.decode_bandwidth,
            device_bf16_tflops=self.training_tflops / cpu.training_mfu,
            vcpus=self.cores,
            host_memory_gib=self.memory_gib,
            snapshot_prices={},
            sources={"hardware": source, "host": source},
        )

    @property
    def date(self) -> str:
        return self.measured_at.date().isoformat()

    def describe(self) -> str:
        """One line: ``local:<machine>: 2 cores, 23.4 GiB, 0.21 TFLOP/s training (bf16), 9.8 GB/s, measured <date>``."""
        return (
            f"{self.instance_type}: {self.cores} cores, {self.memory_gib:.1f} GiB, {self.training_tflops:.3f} TFLOP/s "
            f"training (bf16 autocast), {self.bandwidth_gbps:.1f} GB/s copy bandwidth, measured {self.date}"
        )


def machine_key() -> str:
    """``<arch>-<cores>c-<GiB>g-<hash>``: what a cached profile is valid for (a hash of the CPU model and host)."""
    cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    gib = round(psutil.virtual_memory().total / 1024**3)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    digest = hashlib.sha256(f"{model}|{platform.node()}".encode()).hexdigest()[:6]
    return f"{platform.machine()}-{cores}c-{gib}g-{digest}"


def measure(threads: int | None = None) -> dict[str, Any]:
    """Run the probes in THIS process (module docstring): ``{training_tflops, bandwidth_gbps, probe}``.

    Imports torch and transformers (the training container's); ``threads`` defaults to the cores.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**PROBE_CONFIG))
    params = sum(p.numel() for p in model.parameters())
    batch, tokens = PROBE_BATCH
    ids = torch.randint(0, PROBE_CONFIG["vocab_size"], (batch, tokens))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: allocations, kernel choice
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step()
    seconds = time.perf_counter() - started
    flops = 6.0 * params * batch * tokens * PROBE_STEPS
    # Bandwidth: read + write of a BANDWIDTH_MIB tensor, best of 5.
    src = torch.ones(BANDWIDTH_MIB * 1024**2 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    moved = 2 * src.numel() * src.element_size()
    return {
        "training_tflops": flops / seconds / 1e12,
        "bandwidth_gbps": moved / best / 1e9,
        "probe": {
            "params": params,
            "tokens_per_step": batch * tokens,
            "steps": PROBE_STEPS,
            "seconds": round(seconds, 3),
            "threads": torch.get_num_threads(),
        },
    }


def probe() -> dict[str, Any]:
    """:func:`measure` in a subprocess (the training container's Python; threads set there, not here), at most
    :data:`PROBE_TIMEOUT_S`.

    Raises:
        RuntimeError: the probe failed (its stderr's last line says why).
        subprocess.TimeoutExpired: it took longer.
    """
    done = subprocess.run(
        [sys.executable, "-m", "stratos_cli.local.profile", "--measure-only"],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the local profile probe failed: {last}")
    measured: dict[str, Any] = json.loads(done.stdout)
    return measured


def load_profile(home: Path, *, force: bool = False, max_age_days: float = PROFILE_MAX_AGE_DAYS) -> LocalProfile:
    """This machine's profile: the cached one under ``home/profiles/`` when it is for this machine and younger than
    ``max_age_days``, else a fresh measurement (a subprocess, :data:`PROBE_TIMEOUT_S` at most), cached.

    Raises:
        RuntimeError: the probe failed (its stderr's last line says why).
    """
    key = machine_key()
    path = home / "profiles" / f"{key}.json"
    if path.exists() and not force:
        try:
            cached = LocalProfile.model_validate_json(path.read_text())
        except ValueError:
            cached = None
        if cached is not None and datetime.now(UTC) - cached.measured_at < timedelta(days=max_age_days):
            return cached
    measured = probe()
    profile = LocalProfile(
        machine=key,
        measured_at=datetime.now(UTC),
        cores=psutil.cpu_count(logical=True) or 1,
        memory_gib=round(psutil.virtual_memory().total / 1024**3, 1),
        **measured,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile.model_dump_json(indent=2))
    return profile


def local_prediction(
    plan: Mapping[str, Any],
    spec: Any,
    hyperparameters: Mapping[str, str],
    profile: LocalProfile,
    calibration: Any,
    *,
    train_examples: int | None = None,
    eval_examples: int | None = None,
) -> Any:
    """What the local run's job is predicted to measure on this machine: a
    :class:`~stratos.planner.calibration.Prediction` of basis ``local``.

    Args:
        plan: the chosen plan (:class:`~stratos.payloads.PlanSummary` fields: teacher, student, mode, expected
            accuracy and its band, on-demand training rate, p50 band).
        spec: the :class:`~stratos.spec.TaskSpec` as the local run planned it.
        hyperparameters: the hyperparameters the job ran with (the request's, with the local overrides).
        profile: this machine.
        calibration: earlier runs (:class:`~stratos.planner.calibration.Calibration`): training time per (task
            kind, student, mode, ``local:<machine>``), p50 per (student, ``local:<machine>``).
        train_examples, eval_examples: counted rows when the data are files (JSONL, GSM8K); else the
            hyperparameters' ``train_size`` / ``eval_size``.

    Time (the estimators' formulas, :mod:`stratos.planner.estimators`, with the job's sizes)::

        hours = startup + [tokens x (6 N_s (+ 2 N_t in alignment)) / measured FLOP/s        training passes
                 + teacher rationales (injection, when on)                                    generation
                 + student generating on the eval set (before, after) + teacher on it and the probe]   evaluation
        tokens = rows x min(prompt + output (+ rationale), max_seq_len) x passes (or max_steps x batch x accum)

    Accuracy is the plan's (calibrated) expected accuracy: it does not depend on the hardware. Training cost is
    the hours at the plan's price per training hour (its cost / its hours: on-demand, or after the expected managed
    spot saving), what the same time costs on the AWS instance.
    """
    from stratos.payloads import EstimateBand
    from stratos.planner import estimators as est
    from stratos.planner.calibration import Prediction
    from stratos.planner.catalog import load_catalog
    from stratos.planner.external import plan_model
    from stratos_contract.hyperparameters import TrainingHyperparameters, parse_hyperparameters
    from stratos_contract.parallelism import TeacherPlacement

    catalog = load_catalog()
    teacher, student = plan_model(spec, catalog, str(plan["teacher"])), catalog.model(str(plan["student"]))
    if teacher is None or student is None:
        unknown = [str(plan[role]) for role, m in (("teacher", teacher), ("student", student)) if m is None]
        raise ValueError(f"plan names models the planner does not know: {', '.join(unknown)}")
    mode = cast(est.Mode, str(plan["mode"]))
    hp = parse_hyperparameters(hyperparameters, TrainingHyperparameters)
    inst = profile.instance()
    lat = spec.constraints.latency
    rows = train_examples or hp.train_size
    held_out = eval_examples or hp.eval_size
    passes = hp.epochs
    if hp.max_steps > 0:
        passes = min(passes, hp.max_steps * hp.per_device_batch_size * hp.grad_accum / max(rows, 1))
    rationale = est.RATIONALE_TOKENS if mode == "injection" else 0
    prompt = min(lat.prompt_tokens, hp.max_seq_len)
    output = min(lat.output_tokens, hp.max_seq_len - prompt)
    rationale = min(rationale, hp.max_seq_len - prompt - output)
    workload = est.TrainingWorkload(rows, held_out, prompt, output, passes, rationale, 0.0)
    # The local job runs without a parallelism plan: one process, the teacher beside the student in alignment.
    placement: TeacherPlacement = "colocated" if mode == "alignment" else "generation_only"
    train_s = est.training_seconds(est.training_flops(student, teacher, mode, workload, placement), inst)
    generation_s = 0.0
    if mode == "injection" and hp.teacher_rationales:
        asked = min(hp.rationale_samples, rows) * est.GENERATION_ATTEMPTS
        generation_s = est.generation_seconds(teacher, inst, asked, prompt, est.RATIONALE_TOKENS + output)
    decode = hp.max_new_tokens
    student_rows = held_out * (2 if hp.evaluate_before else 1)
    teacher_rows = (held_out if hp.evaluate_teacher else 0) + hp.probe_size
    eval_s = est.generation_seconds(student, inst, student_rows, lat.prompt_tokens, decode) + est.generation_seconds(
        teacher, inst, teacher_rows, lat.prompt_tokens, decode
    )
    kind = spec.task.kind.value
    hours_raw = est.training_hours(train_s, generation_s, eval_s, profile.startup_s / 3600.0)
    hours, hours_band = calibration.for_training(kind, student.id, mode, inst.instance_type).estimate(hours_raw)
    # The local endpoint server generates one request at a time (its model's lock), so in the load test's closed
    # loop of `concurrency` clients a request waits for those ahead of it: concurrency x one request's latency.
    p50_raw = lat.concurrency * est.p50_latency_ms(student, inst, lat.prompt_tokens, lat.output_tokens, 1)
    p50, p50_band = calibration.for_latency(student.id, inst.instance_type).estimate(p50_raw)
    # The plan's price of an hour of training time, its managed spot saving included (SageMaker bills a spot job
    # fewer billable seconds; the record's actual cost is billable seconds x the on-demand rate).
    planned_hours = float(plan.get("training_hours") or 0.0)
    rate = float(plan.get("training_cost_usd") or 0.0) / planned_hours if planned_hours > 0 else 0.0
    band = plan.get("accuracy_band")
    return Prediction(
        basis="local",
        teacher=teacher.id,
        student=student.id,
        mode=mode,
        training_instance=inst.instance_type,
        serving_instance=inst.instance_type,
        accuracy=float(plan["expected_accuracy"]),
        accuracy_band=EstimateBand.model_validate(band) if isinstance(band, Mapping) else None,
        training_hours=hours,
        training_hours_band=hours_band,
        training_cost_usd=hours * rate,
        p50_latency_ms=p50,
        p50_latency_band=p50_band,
        tokens_per_s=est.throughput_tokens_per_s(p50, lat.output_tokens, lat.concurrency),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="This machine's local instance profile (measured, cached).")
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.add_argument("--force", action="store_true", help="measure again even if a recent profile is cached")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_only:  # the probe subprocess: measure here, print JSON
        print(json.dumps(measure()))
        return 0
    from stratos_cli.local.run import stratos_home

    profile = load_profile(stratos_home(), force=args.force)
    print(profile.model_dump_json(indent=2) if args.json else profile.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
