"""Estimators: the documented formulas, on real catalog records."""

from __future__ import annotations

import dataclasses
import math

import pytest

from stratos.planner import estimators as est
from stratos.planner.catalog import GIB, load_catalog


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_kv_cache_bytes_per_token_of_qwen_7b(cat):
    # 28 layers x 4 KV heads x 128 head dim x (K and V) x 2 bytes = 57,344 bytes a token.
    m = cat.model("qwen2.5-7b-instruct")
    assert est.kv_cache_bytes(m, 1) == 28 * 4 * 128 * 2 * 2
    assert est.kv_cache_bytes(m, 1000) == 1000 * 57_344


def test_sliding_window_layers_cap_the_kv_cache(cat):
    g = cat.model("gemma-3-270m")  # 18 layers: 3 global, 15 local with a 512-token window
    per_layer_token = 2 * 2 * g.kv_heads * g.head_dim
    assert est.kv_cache_bytes(g, 4096) == per_layer_token * (3 * 4096 + 15 * 512)
    assert est.kv_cache_bytes(g, 256) == per_layer_token * 18 * 256


def test_7b_on_a_24gb_gpu_with_long_context_times_concurrency_is_rejected(cat):
    student, g5 = cat.model("qwen2.5-7b-instruct"), cat.instance("ml.g5.xlarge")
    short = est.serving_memory(student, g5, prompt_tokens=512, output_tokens=128, concurrency=1)
    assert short.fits and 14 < short.parts_gib["weights"] < 15  # ~15 GB of BF16 weights fit alone
    long = est.serving_memory(student, g5, prompt_tokens=30_000, output_tokens=2_000, concurrency=4)
    assert not long.fits
    assert long.parts_gib["weights"] + long.parts_gib["kv_cache"] > g5.device_memory_gib * 0.9 - 0.75
    assert "kv_cache" in long.reason() and "GiB" in long.reason()
    assert long.fits is False and short.reason() == ""


def test_tensor_parallel_splits_memory_over_gpus(cat):
    m = cat.model("qwen2.5-32b-instruct")
    one = est.serving_memory(m, cat.instance("ml.g6e.xlarge"), 512, 128, 1)
    four = est.serving_memory(m, cat.instance("ml.g6e.12xlarge"), 512, 128, 1)
    assert not one.fits and four.fits
    assert four.need_gib == pytest.approx(one.need_gib / 4)


def test_decode_is_bandwidth_bound_at_batch_one(cat):
    m, inst = cat.model("qwen2.5-1.5b-instruct"), cat.instance("ml.g6.xlarge")
    eff = est.EFFICIENCY["workstation"]
    step = est.decode_step_seconds(m, inst, 1, 512)
    expected = (est.decode_weight_bytes(m) + est.kv_cache_bytes(m, 512)) / (300e9 * eff.decode_bandwidth)
    assert step == pytest.approx(expected + eff.decode_step_overhead_ms / 1000)


def test_prefill_is_compute_bound(cat):
    m, inst = cat.model("qwen2.5-7b-instruct"), cat.instance("ml.g5.xlarge")
    flops = est.prefill_flops(m, 1000)
    assert flops > 2 * m.body_params * 1000  # plus attention and one LM-head row
    assert est.prefill_seconds(m, inst, 1000) == pytest.approx(flops / (125e12 * 0.5))


def test_p50_latency_formula_and_monotonicity(cat):
    m, inst = cat.model("qwen2.5-0.5b-instruct"), cat.instance("ml.g6.xlarge")
    p50 = est.p50_latency_ms(m, inst, 384, 256, 8)
    by_hand = est.REQUEST_OVERHEAD_MS + 1000 * (
        8 * est.prefill_seconds(m, inst, 384) + 256 * est.decode_step_seconds(m, inst, 8, 384 + 128)
    )
    assert p50 == pytest.approx(by_hand)
    assert est.p50_latency_ms(m, inst, 384, 512, 8) > p50
    assert est.p50_latency_ms(m, inst, 384, 256, 32) > p50
    assert est.p50_latency_ms(m, cat.instance("ml.g5.xlarge"), 384, 256, 8) < p50  # 2x the bandwidth of an L4


def test_throughput_matches_latency(cat):
    assert est.throughput_tokens_per_s(2000.0, 100, 4) == pytest.approx(200.0)


def test_training_flops_per_mode(cat):
    s, t = cat.model("qwen2.5-0.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    w = est.TrainingWorkload(examples=1000, eval_examples=100, prompt_tokens=200, output_tokens=56, epochs=2)
    assert est.training_flops(s, t, "alignment", w) == 1000 * 256 * 2 * (6 * s.params + 2 * t.params)
    assert est.training_flops(s, t, "injection", w) == 1000 * (256 + est.RATIONALE_TOKENS) * 2 * 6 * s.params


def test_training_hours_from_parts(cat):
    s, t = cat.model("qwen2.5-0.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    w = est.TrainingWorkload(2000, 200, 256, 64)
    g6e, p5 = cat.instance("ml.g6e.xlarge"), cat.instance("ml.p5.48xlarge")
    small = est.training_estimate(s, t, "alignment", g6e, w)
    flops = est.training_flops(s, t, "alignment", w)
    assert small.train_hours == pytest.approx(flops / (362e12 * 0.35) / 3600)
    assert small.generation_hours == 0.0
    assert small.hours == pytest.approx(
        est.TRAINING_STARTUP_HOURS + small.train_hours + small.generation_hours + small.eval_hours
    )
    assert est.training_estimate(s, t, "alignment", p5, w).hours < small.hours
    injection = est.training_estimate(s, t, "injection", g6e, w)
    assert injection.generation_hours > 0  # the teacher writes the rationales


def test_training_memory_needs_room_for_the_teacher_in_alignment(cat):
    s, t = cat.model("qwen2.5-0.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    w = est.TrainingWorkload(2000, 200, 256, 64)
    on_a10g = est.training_memory(s, t, "alignment", cat.instance("ml.g5.xlarge"), w)
    on_l40s = est.training_memory(s, t, "alignment", cat.instance("ml.g6e.xlarge"), w)
    assert not on_a10g.fits and on_l40s.fits
    assert on_a10g.parts_gib["teacher_weights"] == pytest.approx(t.params * 2 / GIB)
    fsdp = est.training_memory(s, t, "alignment", cat.instance("ml.g5.12xlarge"), w)
    assert fsdp.fits and fsdp.need_gib < on_a10g.need_gib


def test_expected_accuracy_model():
    base = {"mode": "alignment", "ratio": 10.0, "train_examples": 2000, "data_source": "builtin"}
    acc = est.expected_accuracy(0.5, 0.9, **base)
    assert 0.5 < acc < 0.9
    d = 1 - math.exp(-2000 / est.DATA_HALF_EXAMPLES)
    assert acc == pytest.approx(0.5 + est.KD_GAIN["alignment"] * d * 0.4)
    assert est.expected_accuracy(0.6, 0.5, **base) == 0.6  # a weaker teacher teaches nothing
    assert est.expected_accuracy(0.5, 0.9, **{**base, "train_examples": 200}) < acc
    assert est.expected_accuracy(0.5, 0.9, **{**base, "ratio": 500.0}) < acc  # capacity gap
    # Verified injection data can lift the student past a teacher that does not cover the domain.
    inj = est.expected_accuracy(0.02, 0.3, "injection", 20.0, 100_000, "generator")
    assert inj > 0.3
    assert est.expected_accuracy(0.02, 0.3, "injection", 20.0, 100_000, "jsonl") < inj
    assert est.expected_accuracy(0.99, 1.0, "injection", 20.0, 10**6, "generator") <= 1.0


def test_cpu_figures_make_tiny_models_servable_on_cpu(cat):
    small = cat.model("smollm2-135m-instruct")
    p50 = est.p50_latency_ms(small, cat.instance("ml.c7i.2xlarge"), 256, 64, 4)
    assert 300 < p50 < 1500
    big = cat.model("qwen2.5-7b-instruct")
    assert est.p50_latency_ms(big, cat.instance("ml.c7i.2xlarge"), 256, 64, 4) > 10 * p50


def test_multi_device_scaling_is_below_linear(cat):
    one, eight = cat.instance("ml.g5.xlarge"), cat.instance("ml.g5.48xlarge")
    assert est.peak_flops(eight) == pytest.approx(8 * est.MULTI_DEVICE_EFFICIENCY * est.peak_flops(one))
    single = dataclasses.replace(eight, accelerator_count=1)
    assert est.peak_flops(single) == est.peak_flops(one)
