"""External teachers in the spec and the planner: Bedrock (text only) and SageMaker-endpoint teachers (text, or
top-k log-probabilities) become teacher candidates whose interface decides the mode, whose tokens are priced and
timed at their rate limit, and who take no memory on the training instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratos.errors import SpecValidationError
from stratos.planner import estimators as est
from stratos.planner.catalog import load_catalog
from stratos.planner.external import (
    PROBE_SIZE,
    RATIONALE_PROMPT_TOKENS,
    RATIONALE_SAMPLES,
    api_usage,
    bedrock_snapshot,
    external_teachers,
)
from stratos.planner.matching import TEXT_ONLY_TEACHER, TOKENIZER_MISMATCH, candidate_modes, match_pair
from stratos.planner.plan import plan, summary
from stratos.planner.pricing import snapshot_price_table
from stratos.spec import DistillationMode, TaskSpec, parse_spec

REPO = Path(__file__).resolve().parents[2]
NOVA_LITE = {"kind": "bedrock", "model_id": "amazon.nova-lite-v1:0"}
QWEN_ENDPOINT = {"kind": "sagemaker-endpoint", "endpoint_name": "qwen-teacher", "serves": "qwen2.5-7b-instruct"}


def _spec(**candidates: Any) -> TaskSpec:
    doc = json.loads((REPO / "events/specs/gsm8k.json").read_text())
    doc["candidates"] = candidates
    doc["distillation"]["mode"] = "auto"
    return parse_spec(json.dumps(doc).encode(), "test")


def _errors(**candidates: Any) -> str:
    with pytest.raises(SpecValidationError) as caught:
        _spec(**candidates)
    return str(caught.value)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_the_spec_names_each_external_teacher_field_it_refuses():
    bad_id = _errors(external_teachers=[{**NOVA_LITE, "model_id": "Nova Lite"}])
    assert "candidates.external_teachers[0].model_id: must be a Bedrock foundation-model id" in bad_id
    assert "(got 'Nova Lite')" in bad_id
    assert "external_teachers[0].kind: must be one of 'bedrock', 'sagemaker-endpoint'" in _errors(
        external_teachers=[{"kind": "openai", "model_id": "gpt-4o"}]
    )
    missing = _errors(external_teachers=[{"kind": "sagemaker-endpoint", "endpoint_name": "e"}])
    assert "candidates.external_teachers[0].serves" in missing
    too_many = _errors(external_teachers=[{**QWEN_ENDPOINT, "top_logprobs": 50}])
    assert "external_teachers[0].top_logprobs" in too_many
    twice = _errors(external_teachers=[NOVA_LITE, NOVA_LITE])
    assert "external_teachers.1" in twice or "external_teachers[1]" in twice
    assert "listed twice" in twice


def test_named_external_teachers_replace_the_catalog_unless_teachers_are_named_too():
    only = _spec(external_teachers=[NOVA_LITE, QWEN_ENDPOINT])
    assert only.candidates.teacher_ids() == ["bedrock:amazon.nova-lite-v1:0", "sagemaker-endpoint:qwen-teacher"]
    both = _spec(teachers=["qwen2.5-3b-instruct"], external_teachers=[NOVA_LITE])
    assert both.candidates.teacher_ids() == ["qwen2.5-3b-instruct", "bedrock:amazon.nova-lite-v1:0"]
    assert _spec().candidates.teacher_ids() is None  # the whole catalog


def test_inference_profiles_are_refused_and_unknown_models_say_what_is_known(cat):
    # The stack's IAM grants bedrock:InvokeModel on foundation models only, so the spec takes nothing else.
    for model_id in ("us.amazon.nova-lite-v1:0", "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"):
        assert "must be a Bedrock foundation-model id" in _errors(
            external_teachers=[{**NOVA_LITE, "model_id": model_id}]
        )
    assert bedrock_snapshot().model("amazon.nova-lite-v1:0") is not None
    spec = _spec(external_teachers=[{**NOVA_LITE, "model_id": "anthropic.claude-v2:1"}])
    models, errors = external_teachers(spec, cat)
    assert models == [] and len(errors) == 1
    assert errors[0].path == "candidates.external_teachers[0].model_id"
    assert "not a Bedrock model Stratos knows" in errors[0].reason and "amazon.nova-micro-v1:0" in errors[0].reason


def test_a_bedrock_model_not_offered_in_the_spec_region_is_refused(cat):
    doc = json.loads((REPO / "events/specs/gsm8k.json").read_text())
    doc["constraints"]["region"] = "eu-west-1"
    doc["distillation"]["mode"] = "auto"
    doc["candidates"] = {"external_teachers": [NOVA_LITE]}
    spec = parse_spec(json.dumps(doc).encode(), "test")
    _, errors = external_teachers(spec, cat)
    assert "not offered on demand in eu-west-1" in errors[0].reason
    with pytest.raises(SpecValidationError, match=r"external_teachers\[0\]\.model_id"):
        plan(spec, snapshot_price_table("eu-west-1", cat), catalog=cat)


def test_an_endpoint_teacher_is_the_model_it_serves_under_its_own_id(cat):
    spec = _spec(
        external_teachers=[{**QWEN_ENDPOINT, "top_logprobs": 5, "prompt_format": "chat", "tokens_per_minute": 30_000}]
    )
    [model], errors = external_teachers(spec, cat)
    assert errors == []
    served = cat.model("qwen2.5-7b-instruct")
    assert model.id == "sagemaker-endpoint:qwen-teacher" and model.params == served.params
    assert model.tokenizer_family == served.tokenizer_family and model.priors == served.priors
    assert model.access is not None and model.access.interface == "top-k" and model.access.top_logprobs == 5
    assert (model.access.usd_per_1k_input, model.access.usd_per_1k_output) == (0.0, 0.0)
    bad = _spec(external_teachers=[{**QWEN_ENDPOINT, "serves": "no-such-model"}])
    _, errors = external_teachers(bad, cat)
    assert errors[0].path == "candidates.external_teachers[0].serves"


def test_the_teacher_interface_decides_which_modes_a_pair_allows(cat):
    student = cat.model("qwen2.5-0.5b-instruct")
    spec = _spec(
        external_teachers=[
            NOVA_LITE,
            {**QWEN_ENDPOINT, "top_logprobs": 5, "prompt_format": "chat"},
            {**QWEN_ENDPOINT, "endpoint_name": "qwen-text"},
            {**QWEN_ENDPOINT, "endpoint_name": "qwen-plain", "top_logprobs": 5},  # plain-text prompts
        ]
    )
    bedrock, topk, text, plain = external_teachers(spec, cat)[0]
    v = match_pair(bedrock, student)
    assert v.alignment == TEXT_ONLY_TEACHER and v.injection is None and "size unpublished" in v.detail
    assert candidate_modes(DistillationMode.AUTO, v) == ["injection"]
    v = match_pair(topk, student)  # top-k from an endpoint, the same tokenizer family: top-k alignment
    assert v.alignment is None and v.injection is None and "top-5 log-probabilities" in v.detail
    assert v.shared_vocab == min(topk.vocab_size, student.vocab_size)
    assert candidate_modes(DistillationMode.AUTO, v) == ["alignment", "injection"]
    assert match_pair(text, student).alignment == TEXT_ONLY_TEACHER
    assert plain.access is not None and plain.access.interface == "text"  # not the student's chat turn
    assert match_pair(plain, student).alignment == TEXT_ONLY_TEACHER
    assert match_pair(topk, cat.model("smollm2-135m-instruct-l15")).alignment == TOKENIZER_MISMATCH


def test_api_usage_counts_the_evaluation_and_the_training_calls(cat):
    [bedrock], _ = external_teachers(_spec(external_teachers=[NOVA_LITE]), cat)
    access = bedrock.access
    assert access is not None
    w = est.TrainingWorkload(1000, 200, prompt_tokens=300, output_tokens=100)
    u = api_usage(access, "injection", 1000, 200, w)
    # The teacher's evaluation row, the auto-mode probe, and one rationale for each of the first
    # rationale_samples training examples (the job's defaults), not one per training example.
    asked = RATIONALE_SAMPLES
    calls = 200 + PROBE_SIZE + asked
    tokens_in = (200 + PROBE_SIZE) * 300 + asked * (300 + RATIONALE_PROMPT_TOKENS)
    tokens_out = (200 + PROBE_SIZE) * 100 + asked * (w.rationale_tokens + 100)
    assert (u.calls, u.input_tokens, u.output_tokens) == (calls, tokens_in, tokens_out)
    assert u.seconds == pytest.approx((tokens_in + tokens_out) / (access.tokens_per_minute / 60))
    usd = tokens_in / 1000 * access.usd_per_1k_input + tokens_out / 1000 * access.usd_per_1k_output
    assert u.usd == pytest.approx(usd)
    aligned = api_usage(access, "alignment", 1000, 200, w, probe=False)  # the teacher writes each target once
    assert (aligned.calls, aligned.input_tokens) == (1200, 1200 * 300)
    few = api_usage(access, "injection", 10, 200, w, probe=False)  # fewer examples than rationale_samples
    assert few.calls == 200 + 10


@pytest.mark.parametrize(
    ("teacher", "why"),
    [
        (NOVA_LITE, "(bedrock:amazon.nova-lite-v1:0): Bedrock's Converse API returns text only"),
        (QWEN_ENDPOINT, "(sagemaker-endpoint:qwen-teacher): top_logprobs is 0"),
        ({**QWEN_ENDPOINT, "top_logprobs": 5}, "(sagemaker-endpoint:qwen-teacher): prompt_format 'text'"),
    ],
)
def test_a_forced_alignment_with_a_text_only_external_teacher_is_refused_at_distillation_mode(teacher, why):
    doc = json.loads((REPO / "events/specs/gsm8k.json").read_text())
    doc["distillation"]["mode"] = "alignment"
    doc["candidates"] = {"external_teachers": [teacher]}
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(json.dumps(doc).encode(), "test")
    [error] = caught.value.errors
    assert error.path == "distillation.mode"
    assert f"candidates.external_teachers[0] {why}" in error.reason and "injection only" in error.reason
    # An endpoint that returns top-k log-probabilities can be aligned to (top-k KD).
    doc["candidates"] = {"external_teachers": [{**QWEN_ENDPOINT, "top_logprobs": 5, "prompt_format": "chat"}]}
    assert parse_spec(json.dumps(doc).encode(), "test").distillation.mode.value == "alignment"


def test_a_bedrock_teacher_plans_injection_with_its_tokens_priced_and_no_teacher_memory(cat):
    spec = _spec(external_teachers=[NOVA_LITE], students=["qwen2.5-0.5b-instruct"])
    result = plan(spec, snapshot_price_table(spec.constraints.region, cat), catalog=cat)
    chosen = result.chosen
    assert chosen.teacher == "bedrock:amazon.nova-lite-v1:0" and chosen.mode == "injection"
    assert chosen.parallelism is not None and chosen.parallelism.teacher_placement == "external"
    assert chosen.teacher_tokens > 0 and chosen.teacher_tokens_usd > 0
    assert chosen.training_cost_usd > chosen.teacher_tokens_usd  # the instance time, plus the tokens
    s = summary(chosen)
    assert s.teacher_tokens == round(chosen.teacher_tokens)
    assert s.teacher_tokens_usd == pytest.approx(chosen.teacher_tokens_usd, abs=1e-4)
    # Without the teacher on the instance, training memory is the student's alone.
    student = cat.model("qwen2.5-0.5b-instruct")
    [teacher], _ = external_teachers(spec, cat)
    terms = est.training_memory_terms(student, teacher, "injection", result.context.workload)
    assert set(terms.coefficients) == {(s, "external") for s in ("single_device", "ddp", "fsdp_full_shard")}
    assert est.training_flops(student, teacher, "alignment", result.context.workload, "external") == (
        est.training_flops(student, teacher, "injection", result.context.workload, "external")
        * result.context.workload.sequence_tokens("alignment")
        / result.context.workload.sequence_tokens("injection")
    )


def test_a_spot_plan_with_a_priced_teacher_keeps_its_saving_right(cat):
    spec = _spec(external_teachers=[NOVA_LITE], students=["qwen2.5-0.5b-instruct"])
    result = plan(spec, snapshot_price_table(spec.constraints.region, cat), catalog=cat)
    d = result.chosen.as_dict()
    assert d["spot"]  # constraints.spot auto: spot is cheaper here
    assert d["on_demand_training_cost_usd"] - d["spot_saving_usd"] == pytest.approx(d["training_cost_usd"])
    assert d["on_demand_training_cost_usd"] > d["teacher_tokens_usd"] > 0


def test_validate_spec_refuses_teachers_the_stack_may_not_call_and_endpoints_not_serving():
    from stratos.pipeline.settings import Settings
    from stratos.pipeline.validate import external_teacher_errors, teacher_endpoint_errors

    spec = _spec(external_teachers=[NOVA_LITE, QWEN_ENDPOINT])
    allowed = Settings(bedrock_teachers=("amazon.nova-lite-v1:0",), teacher_endpoints=("qwen-teacher",))
    assert external_teacher_errors(spec, allowed) == []
    errors = {e.path: e.reason for e in external_teacher_errors(spec, Settings())}
    assert "BedrockTeacherModelIds: none" in errors["candidates.external_teachers[0].model_id"]
    assert "TeacherEndpointNames: none" in errors["candidates.external_teachers[1].endpoint_name"]

    class Endpoints:
        def __init__(self, described: dict[str, Any] | None) -> None:
            self.described = described

        def describe_endpoint(self, name: str) -> dict[str, Any] | None:
            return self.described

    failed = {"EndpointStatus": "Failed", "FailureReason": "image pull failed"}
    [error] = teacher_endpoint_errors(spec, Endpoints(failed))
    assert error.path == "candidates.external_teachers[1].endpoint_name"
    assert error.reason == "the endpoint is Failed, not serving (image pull failed)"
    assert teacher_endpoint_errors(spec, Endpoints({"EndpointStatus": "Updating"})) == []
    assert "no such endpoint" in teacher_endpoint_errors(spec, Endpoints(None))[0].reason
