"""The parallelism plan: one memory model chooses it (plan_memory, choose_parallelism), the planner prices and
times it, and every plan it returns carries it."""

from __future__ import annotations

import itertools
import json

import pytest

from stratos.payloads import S3Pointer
from stratos.planner import estimators as est
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import plan
from stratos.planner.pricing import snapshot_price_table
from stratos.spec import validate_spec_document
from stratos_contract.parallelism import MAX_NODES, ParallelismPlan
from tests.conftest import SPECS

W = est.TrainingWorkload(examples=2000, eval_examples=200, prompt_tokens=256, output_tokens=64)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def choose(cat, student: str, teacher: str, mode: str, instance: str, workload=W) -> ParallelismPlan | None:
    return est.choose_parallelism(cat.model(student), cat.model(teacher), mode, cat.instance(instance), workload)


def fit(cat, student: str, teacher: str, mode: str, instance: str, layout: ParallelismPlan, workload=W):
    return est.plan_memory(cat.model(student), cat.model(teacher), mode, workload, layout, cat.instance(instance))


def test_a_7b_student_that_fits_only_sharded_gets_fsdp_not_ddp(cat):
    layout = choose(cat, "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "alignment", "ml.p4de.24xlarge")
    assert layout is not None
    assert (layout.strategy, layout.nodes, layout.devices_per_node) == ("fsdp_full_shard", 1, 8)
    assert layout.teacher_placement == "colocated"
    # A full replica (16 bytes/param: ~113 GiB) cannot sit on one 80 GB A100, so DDP does not fit there ...
    ddp = layout.model_copy(update={"strategy": "ddp", "micro_batch": 1})
    replica = fit(cat, "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "alignment", "ml.p4de.24xlarge", ddp)
    assert not replica.fits and replica.parts_gib["student_states"] > 100
    # ... and the plan's own estimate is what plan_memory says of it, within the device.
    sharded = fit(cat, "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "alignment", "ml.p4de.24xlarge", layout)
    assert sharded.fits and sharded.need_gib == pytest.approx(layout.estimated_peak_gib, abs=1e-3)
    assert layout.device_capacity_gib == pytest.approx(sharded.capacity_gib)


def test_a_pair_that_fits_nowhere_on_one_node_spans_nodes_and_is_priced_per_node(cat):
    doc = json.loads((SPECS / "gsm8k.json").read_text())
    doc["candidates"] = {"teachers": ["qwen2.5-14b-instruct"], "students": ["qwen2.5-7b-instruct"]}
    doc["constraints"].update(
        instance_allowlist=["ml.g5.48xlarge", "ml.g5.xlarge"],
        budget_usd=100_000,
        max_training_hours=100,
        latency={**doc["constraints"]["latency"], "p50_ms": 100_000},
        spot="off",  # on-demand prices here; tests/unit/test_planner_spot.py prices nodes on spot
    )
    spec = validate_spec_document(doc)
    result = plan(spec, snapshot_price_table(spec.constraints.region, cat))
    chosen = result.chosen
    layout = chosen.parallelism
    assert chosen.training_instance == "ml.g5.48xlarge"  # 8 x 24 GB: too small for this pair on one node
    assert layout is not None and layout.strategy == "fsdp_full_shard" and 1 < layout.nodes <= MAX_NODES
    workload = result.context.workload
    assert choose(cat, "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "alignment", "ml.g5.48xlarge", workload) == layout
    price = float(cat.instance("ml.g5.48xlarge").snapshot_prices[(spec.constraints.region, "Training")])
    assert chosen.training_usd_per_hour == pytest.approx(layout.nodes * price)
    assert chosen.training_cost_usd == pytest.approx(chosen.training_hours * layout.nodes * price)
    # Its time: the optimiser passes on `nodes` instances at the stated inter-node efficiency.
    estimate = est.training_estimate(
        cat.model(chosen.student),
        cat.model(chosen.teacher),
        chosen.mode,
        cat.instance("ml.g5.48xlarge"),
        workload,
        layout,
    )
    one_node = est.training_seconds(estimate.flops, cat.instance("ml.g5.48xlarge"))
    assert estimate.train_hours * 3600 == pytest.approx(one_node / (layout.nodes * est.INTER_NODE_EFFICIENCY))
    # The plan travels with the state payload and the frontier document.
    ref = result.plan_ref(S3Pointer(uri="s3://stratos-artifacts/runs/r1/plan/frontier.json", bytes=1, sha256="0" * 64))
    assert ref.plan.parallelism == layout
    assert result.frontier_document()["plan"]["parallelism"] == layout.model_dump(mode="json")


def test_a_small_pair_on_a_one_gpu_instance_is_single_device(cat):
    layout = choose(cat, "smollm2-135m-instruct-l15", "smollm2-135m-instruct", "alignment", "ml.g5.xlarge")
    assert layout is not None
    assert (layout.strategy, layout.world_size, layout.teacher_placement) == ("single_device", 1, "colocated")
    assert (layout.micro_batch, layout.grad_accum) == (est.MAX_MICRO_BATCH, 4)
    assert layout.global_batch == est.TARGET_GLOBAL_BATCH_SEQUENCES and layout.gradient_checkpointing


def test_a_cpu_instance_is_one_device_per_node(cat):
    layout = choose(cat, "smollm2-135m-instruct-l15", "smollm2-135m-instruct", "alignment", "ml.c7i.2xlarge")
    assert layout is not None and (layout.strategy, layout.nodes, layout.devices_per_node) == ("single_device", 1, 1)


def test_a_multi_gpu_instance_with_room_for_a_replica_runs_ddp_on_every_gpu(cat):
    layout = choose(cat, "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "alignment", "ml.p5.48xlarge")
    assert layout is not None and (layout.strategy, layout.devices_per_node) == ("ddp", 8)
    # The global batch stays near the target: 8 devices x 4 sequences, no accumulation.
    assert (layout.micro_batch, layout.grad_accum, layout.global_batch) == (4, 1, 32)


def test_injection_generates_with_the_teacher_only(cat):
    layout = choose(cat, "smollm2-135m-instruct", "gemma-3-270m", "injection", "ml.c7i.4xlarge")
    assert layout is not None and layout.teacher_placement == "generation_only"
    big = choose(cat, "qwen2.5-1.5b-instruct", "qwen2.5-72b-instruct", "injection", "ml.p4de.24xlarge")
    assert big is not None and big.teacher_placement == "generation_only" and big.strategy == "fsdp_full_shard"


def test_alignment_with_a_teacher_too_big_to_sit_beside_the_student_caches_its_top_k(cat):
    # 7B teacher (~14 GiB BF16) + 0.5B student states (~7 GiB) + logits exceed a 24 GB A10G ...
    a10g = choose(cat, "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "alignment", "ml.g5.xlarge")
    assert a10g is not None and (a10g.strategy, a10g.teacher_placement) == ("single_device", "topk_cache")
    topk = fit(cat, "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "alignment", "ml.g5.xlarge", a10g)
    colocated = fit(
        cat,
        "qwen2.5-0.5b-instruct",
        "qwen2.5-7b-instruct",
        "alignment",
        "ml.g5.xlarge",
        a10g.model_copy(update={"teacher_placement": "colocated"}),
    )
    assert topk.fits and not colocated.fits
    assert topk.phase in ("teacher_topk", "training", "teacher_generation")
    # ... while a 48 GB L40S keeps the teacher live beside the student.
    l40s = choose(cat, "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "alignment", "ml.g6e.xlarge")
    assert l40s is not None and l40s.teacher_placement == "colocated"


def test_no_plan_when_nothing_fits_even_over_the_most_nodes(cat):
    assert choose(cat, "qwen2.5-7b-instruct", "qwen2.5-72b-instruct", "alignment", "ml.c7i.large") is None
    # The planner counts such an instance as training-memory infeasible, never as a cheap option.
    terms = est.training_memory_terms(
        cat.model("qwen2.5-7b-instruct"), cat.model("qwen2.5-72b-instruct"), "alignment", W
    )
    assert est.parallelism_for(terms, cat.instance("ml.c7i.large")) is None


@pytest.mark.parametrize(
    ("student", "teacher", "mode", "placement"),
    [
        ("qwen2.5-1.5b-instruct", "qwen2.5-7b-instruct", "alignment", "colocated"),
        ("qwen2.5-1.5b-instruct", "qwen2.5-7b-instruct", "alignment", "topk_cache"),
        ("qwen2.5-1.5b-instruct", "llama-3.1-8b-instruct", "injection", "generation_only"),
    ],
)
def test_plan_memory_grows_with_the_micro_batch_and_shrinks_with_the_world_under_fsdp(
    cat, student, teacher, mode, placement
):
    def need(strategy: str, nodes: int, micro_batch: int) -> est.MemoryFit:
        layout = ParallelismPlan(
            strategy=strategy,  # type: ignore[arg-type]
            nodes=nodes,
            devices_per_node=8,
            micro_batch=micro_batch,
            teacher_placement=placement,  # type: ignore[arg-type]
        )
        return fit(cat, student, teacher, mode, "ml.p4d.24xlarge", layout)

    for strategy, nodes in (("ddp", 1), ("fsdp_full_shard", 1), ("fsdp_full_shard", 4)):
        peaks = [need(strategy, nodes, m) for m in (1, 2, 4, 8)]
        # Non-decreasing (a generation phase that does not depend on it may be the peak), rising overall.
        assert all(a.need_gib <= b.need_gib for a, b in itertools.pairwise(peaks))
        assert peaks[0].need_gib < peaks[3].need_gib
        # Per-sequence terms scale with the micro-batch exactly; the others do not move.
        one, eight = peaks[0].parts_gib, peaks[3].parts_gib
        if peaks[0].phase == peaks[3].phase == "training":
            assert eight["activations"] == pytest.approx(8 * one["activations"])
            assert eight["student_states"] == pytest.approx(one["student_states"])
    # Under FSDP the sharded terms fall with the world size; the per-device ones do not grow.
    by_world = [need("fsdp_full_shard", nodes, 1).need_gib for nodes in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in itertools.pairwise(by_world))
    # DDP holds a full replica: more than FSDP over the same devices.
    assert need("ddp", 1, 1).need_gib > need("fsdp_full_shard", 1, 1).need_gib


def test_the_training_phase_terms_scale_as_documented(cat):
    s, t = cat.model("qwen2.5-1.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    terms = est.training_memory_terms(s, t, "alignment", W)
    layout = ParallelismPlan(strategy="fsdp_full_shard", nodes=2, devices_per_node=8, micro_batch=4)
    memory = est.plan_memory(s, t, "alignment", W, layout, cat.instance("ml.p4d.24xlarge"))
    assert memory.phase == "training"
    gib = 1024**3
    parts = memory.parts_gib
    assert parts["student_states"] == pytest.approx(16 * s.params / 16 / gib)  # 16 bytes/param over 16 devices
    assert parts["teacher_weights"] == pytest.approx(2 * t.params / 16 / gib)  # sharded like the student
    assert parts["activations"] == pytest.approx(4 * terms.student_activation_bytes / gib)
    assert parts["student_fsdp_units"] == pytest.approx(terms.student_unsharded_bytes / gib)
    assert "ddp_buckets" not in parts


def test_the_chosen_micro_batch_is_the_largest_that_fits(cat):
    pair = ("llama-3.2-1b-instruct", "llama-3.1-8b-instruct", "alignment", "ml.g5.xlarge")
    layout = choose(cat, *pair)
    assert layout is not None and layout.nodes == 1 and layout.micro_batch < est.MAX_MICRO_BATCH
    assert fit(cat, *pair, layout).fits
    assert not fit(cat, *pair, layout.model_copy(update={"micro_batch": layout.micro_batch * 2})).fits
    assert layout.grad_accum * layout.micro_batch == est.TARGET_GLOBAL_BATCH_SEQUENCES


def test_long_contexts_lower_the_generation_batch(cat):
    s, t = cat.model("qwen2.5-7b-instruct"), cat.model("qwen2.5-72b-instruct")
    inst = cat.instance("ml.p4de.24xlarge")
    short = est.choose_parallelism(s, t, "injection", inst, W)
    assert short is not None and est.plan_generation_batch(s, t, "injection", W, short, inst) == 16
    long = est.TrainingWorkload(2000, 200, prompt_tokens=30_000, output_tokens=2_000)
    layout = est.choose_parallelism(s, t, "injection", inst, long)
    assert layout is not None
    batch = est.plan_generation_batch(s, t, "injection", long, layout, inst)
    assert 1 <= batch < 16
    memory = est.plan_memory(s, t, "injection", long, layout, inst)
    assert memory.fits
    kv = est.kv_cache_bytes(t, long.sequence_tokens("injection")) / 1024**3
    if memory.phase == "teacher_generation":
        assert memory.parts_gib["teacher_kv_cache"] == pytest.approx(batch * kv)


def test_a_top_k_cache_runs_the_teacher_once_not_every_epoch(cat):
    s, t = cat.model("qwen2.5-0.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    live = est.training_flops(s, t, "alignment", W, "colocated")
    cached = est.training_flops(s, t, "alignment", W, "topk_cache")
    tokens = W.train_tokens("alignment")
    assert live - cached == pytest.approx(tokens * 2 * t.params * (1 - 1 / W.epochs))
    assert est.training_flops(s, t, "injection", W, "generation_only") == est.training_flops(s, t, "injection", W)


def test_training_memory_is_the_one_node_sharded_plan(cat):
    s, t = cat.model("qwen2.5-0.5b-instruct"), cat.model("qwen2.5-7b-instruct")
    inst = cat.instance("ml.g5.12xlarge")
    layout = ParallelismPlan(strategy="fsdp_full_shard", devices_per_node=4)
    assert est.training_memory(s, t, "alignment", inst, W) == est.plan_memory(s, t, "alignment", W, layout, inst)
