"""The post-deploy load test's maths and bounds (stratos.loadtest): percentiles, tokens/s, the tolerance rule, the
prompt rule, the closed loop's bounds, the details fallback, and InvokeEndpoint through botocore's Stubber."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from typing import Any

import pytest

from stratos.loadtest import (
    CHARS_PER_TOKEN,
    LATENCY_TOLERANCE,
    MAX_LOAD_CONCURRENCY,
    LoadShape,
    LoadTestResult,
    SageMakerRuntimeTransport,
    TransportError,
    default_requests,
    latency_limit_ms,
    percentile,
    prompt_text,
    read_answer,
    request_body,
    run_load_test,
    verdict,
)
from stratos.pipeline.latency import latency_check
from stratos.spec import parse_spec
from tests.conftest import SPECS


def _result(**fields: Any) -> LoadTestResult:
    base: dict[str, Any] = {
        "concurrency": 4,
        "requests": 16,
        "errors": 0,
        "p50_ms": 1000.0,
        "p90_ms": 1200.0,
        "tokens_per_s": 200.0,
        "output_tokens": 1024,
        "output_tokens_budget": 64,
        "prompt_tokens_target": 256,
        "prompt_chars": 1024,
        "wall_s": 5.12,
    }
    return LoadTestResult(**(base | fields))


# ---------------------------------------------------------------------------------------------------------------
# Percentiles, the tolerance rule, the prompt and answer rules.


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 101])
def test_percentile_is_numpys_linear_interpolation(n):
    np = pytest.importorskip("numpy")
    rng = random.Random(n)
    values = [rng.uniform(1, 5000) for _ in range(n)]
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_by_hand_and_refusals():
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0  # position 1.5: halfway between 20 and 30
    assert percentile([10.0, 20.0, 30.0, 40.0], 90) == pytest.approx(37.0)  # position 2.7
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_tolerance_rule_passes_up_to_the_limit_and_not_beyond():
    assert LATENCY_TOLERANCE == 0.10
    assert latency_limit_ms(1500) == pytest.approx(1650)
    ok, why = verdict(_result(p50_ms=1650.0), 1500)
    assert ok and "measured p50 1,650 ms <= limit 1,650 ms = latency.p50_ms 1,500 + 10%" in why
    ok, why = verdict(_result(p50_ms=1650.5), 1500)
    assert not ok and why.startswith("measured p50 1,650 ms > limit 1,650 ms")  # 1650.5 rounds in the text only
    ok, why = verdict(_result(p50_ms=1700.0), 1500, tolerance=0.2)
    assert ok and "limit 1,800 ms" in why


def test_any_failed_request_or_no_answer_fails_however_fast():
    ok, why = verdict(_result(p50_ms=10.0, errors=1, error_samples=["ModelError: boom"]), 1500)
    assert not ok and why.startswith("1 of 16 requests failed") and "ModelError: boom" in why
    ok, why = verdict(_result(p50_ms=None, p90_ms=None, tokens_per_s=None, errors=16), 1500)
    assert not ok and "no request answered of 16" in why


def test_prompt_text_has_the_asked_length_and_differs_per_request():
    for chars in (1, 10, 1024, 5000):
        assert len(prompt_text(chars, 0)) == max(chars, len("0 the"))  # at least the number and one word
    first, second = prompt_text(400, 1), prompt_text(400, 2)
    assert first.startswith("1 ") and second.startswith("2 ") and prompt_text(400, 1) == first  # deterministic
    assert first.split()[1] != second.split()[1]  # and the words start elsewhere
    body = request_body("hi", 64, details=True)
    assert body == {
        "inputs": "hi",
        "parameters": {"max_new_tokens": 64, "do_sample": False, "details": True, "decoder_input_details": True},
    }
    assert "details" not in request_body("hi", 64, details=False)["parameters"]


def test_read_answer_counts_reported_tokens_else_estimates_them():
    tgi = [{"generated_text": "Answer: 2m", "details": {"generated_tokens": 7, "prefill": [{"id": 1}] * 12}}]
    assert read_answer(tgi, "prompt") == (7, True, 12)
    echoed = [{"generated_text": "my prompt" + "x" * 10}]  # the inference toolkit echoes the prompt by default
    assert read_answer(echoed, "my prompt") == (int(10 / CHARS_PER_TOKEN + 0.999), False, None)
    assert read_answer({"generated_text": "abcd"}, "p") == (1, False, None)  # a bare object, too
    with pytest.raises(ValueError, match="unexpected answer shape"):
        read_answer([{"text": "no"}], "p")


def test_load_shape_from_the_spec_spreads_over_instances_and_is_capped():
    spec = parse_spec((SPECS / "mahjong-winning-tiles.json").read_bytes())
    shape = LoadShape.from_spec(spec)
    lat = spec.constraints.latency
    assert (shape.concurrency, shape.prompt_tokens, shape.output_tokens) == (4, lat.prompt_tokens, lat.output_tokens)
    assert shape.requests == default_requests(4) == 16 and shape.max_seconds == 120
    assert LoadShape.from_spec(spec, instance_count=3).concurrency == 12
    assert default_requests(12) == 48
    assert LoadShape.from_spec(spec, instance_count=1000).concurrency == MAX_LOAD_CONCURRENCY


# ---------------------------------------------------------------------------------------------------------------
# The closed loop, against in-process transports.


class Recording:
    """A transport that answers TGI's shape after ``seconds``, counts calls and the most in flight at once, and
    fails requests whose index is in ``failing`` (counting calls from 0, the warm-up included)."""

    def __init__(self, seconds: float = 0.0, tokens: int = 10, failing: frozenset[int] = frozenset()) -> None:
        self.seconds, self.tokens, self.failing = seconds, tokens, failing
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def invoke(self, body: dict[str, Any]) -> Any:
        with self.lock:
            index = len(self.bodies)
            self.bodies.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.seconds)
            if index in self.failing:
                raise TransportError(f"ModelError (container status 500): request {index}")
            return self.answer(body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def answer(self, body: dict[str, Any]) -> Any:
        return [{"generated_text": "x" * 40, "details": {"generated_tokens": self.tokens, "prefill": []}}]


def test_the_loop_sends_the_bound_at_the_concurrency_and_excludes_the_warmup():
    transport = Recording(seconds=0.02)
    shape = LoadShape(concurrency=3, prompt_tokens=32, output_tokens=10, requests=10, max_seconds=60)
    result = run_load_test(transport, shape)
    # A one-token probe (this endpoint reports no prompt size, so no second one) and a warm-up, not counted.
    assert len(transport.bodies) == 12 and result.requests == 10
    assert transport.most_in_flight == 3 and result.concurrency == 3
    assert result.errors == 0 and not result.stopped_by_time and result.warmup_ms is not None
    assert result.output_tokens == 100 and result.tokens_counted == "reported"
    # tokens/s: generated tokens of the answered requests over the measured wall time (warm-up excluded).
    assert result.tokens_per_s == pytest.approx(100 / result.wall_s)
    assert 0.02 * 10 / 3 <= result.wall_s < 5
    assert [b["parameters"]["max_new_tokens"] for b in transport.bodies] == [1] + [10] * 11
    assert result.p50_ms is not None and 20 <= result.p50_ms < 1000 and result.p90_ms >= result.p50_ms


def test_failed_requests_are_counted_not_measured():
    transport = Recording(failing=frozenset({2, 5}))
    shape = LoadShape(concurrency=1, prompt_tokens=8, output_tokens=4, requests=6, max_seconds=60)
    result = run_load_test(transport, shape)
    assert (result.requests, result.errors) == (6, 2)
    assert result.output_tokens == 40  # the 4 answered requests' tokens only
    assert result.error_samples == ["TransportError: ModelError (container status 500): request 2",
                                    "TransportError: ModelError (container status 500): request 5"]  # fmt: skip
    assert not verdict(result, 10_000)[0]


def test_the_time_cap_stops_issuing_and_waits_for_requests_in_flight():
    transport = Recording(seconds=0.3)
    shape = LoadShape(concurrency=2, prompt_tokens=8, output_tokens=4, requests=100, max_seconds=0.1)
    started = time.perf_counter()
    result = run_load_test(transport, shape)
    assert result.stopped_by_time and result.requests == 2 and result.errors == 0  # one round, both answered
    assert time.perf_counter() - started < 2.0


def test_an_endpoint_refusing_details_is_measured_with_estimated_tokens():
    class NoDetails(Recording):
        def answer(self, body: dict[str, Any]) -> Any:
            if "details" in body["parameters"]:
                raise TransportError("ModelError (container status 400): unexpected keyword argument 'details'")
            return [{"generated_text": body["inputs"] + "y" * 20}]  # echoes the prompt, as the toolkit does

    transport = NoDetails()
    shape = LoadShape(concurrency=2, prompt_tokens=16, output_tokens=8, requests=4, max_seconds=60)
    result = run_load_test(transport, shape)
    assert result.warmup_error is None and result.errors == 0 and result.requests == 4
    assert result.tokens_counted == "estimated" and result.output_tokens == 4 * 5  # 20 characters / 4
    assert [("details" in b["parameters"]) for b in transport.bodies[:2]] == [True, False]
    assert all("details" not in b["parameters"] for b in transport.bodies[2:])


def test_the_prompt_is_sized_by_the_endpoints_own_token_count():
    class TwoCharTokens(Recording):
        def answer(self, body: dict[str, Any]) -> Any:
            prefill = [{"id": 0, "text": "x"}] * (len(body["inputs"]) // 2)
            return [{"generated_text": "ok", "details": {"generated_tokens": 2, "prefill": prefill}}]

    transport = TwoCharTokens()
    shape = LoadShape(concurrency=1, prompt_tokens=200, output_tokens=2, requests=3, max_seconds=60)
    result = run_load_test(transport, shape)
    # Probes of a quarter and an eighth of the target by the 4-characters rule; then this tokenizer's 2 characters.
    assert [len(b["inputs"]) for b in transport.bodies[:2]] == [200 * CHARS_PER_TOKEN / 4, 100]
    assert result.prompt_chars == 400 and result.prompt_tokens == 200
    assert len(transport.bodies[2]["inputs"]) == 400  # the warm-up has the measured shape


def test_a_failed_warmup_is_recorded_and_the_loop_still_runs():
    transport = Recording(failing=frozenset({0, 1, 2}))  # the probe, its retry without details, the warm-up
    shape = LoadShape(concurrency=1, prompt_tokens=8, output_tokens=4, requests=2, max_seconds=60)
    result = run_load_test(transport, shape)
    assert result.warmup_error and "request 2" in result.warmup_error and result.warmup_ms is None
    assert result.requests == 2 and result.errors == 0


# ---------------------------------------------------------------------------------------------------------------
# The check's figures against the plan.


def test_latency_check_compares_with_the_plan():
    measured = _result(p50_ms=1250.0, tokens_per_s=150.0, concurrency=4)
    check = latency_check(
        measured,
        endpoint_name="e",
        endpoint_config_name="c",
        spec_p50_ms=1500,
        predicted_p50_ms=1000.0,
        output_tokens=64,
    )
    assert check.passed and check.limit_ms == pytest.approx(1650)
    assert check.predicted_tokens_per_s == pytest.approx(4 * 64 / 1.0)  # concurrency x output tokens / p50 (s)
    assert check.p50_error == pytest.approx(0.25) and check.tokens_per_s_error == pytest.approx(150 / 256 - 1)
    failed = latency_check(
        _result(p50_ms=2000.0), endpoint_name="e", endpoint_config_name="c", spec_p50_ms=1500, predicted_p50_ms=0.0,
        output_tokens=64,
    )  # fmt: skip
    assert not failed.passed and failed.reason.startswith("endpoint e: measured p50 2,000 ms > limit 1,650 ms")
    assert failed.p50_error is None and failed.predicted_tokens_per_s == 0


# ---------------------------------------------------------------------------------------------------------------
# InvokeEndpoint through botocore's Stubber (recorded response shapes).


def _stubbed() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def test_sagemaker_runtime_transport_sends_json_and_decodes_the_answer():
    from botocore.response import StreamingBody

    client, stubber = _stubbed()
    answer = json.dumps([{"generated_text": "2m", "details": {"generated_tokens": 3}}]).encode()
    body = request_body("hand?", 64, details=True)
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
        {
            "EndpointName": "stratos-x",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(body).encode(),
        },
    )
    with stubber:
        got = SageMakerRuntimeTransport("stratos-x", client=client).invoke(body)
    assert got == [{"generated_text": "2m", "details": {"generated_tokens": 3}}]
    stubber.assert_no_pending_responses()


def test_sagemaker_runtime_transport_names_a_model_error_and_its_container_status():
    client, stubber = _stubbed()
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message='Received client error (422) from primary with message "Input validation error"',
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 422, "OriginalMessage": "Input validation error"},
    )
    with stubber, pytest.raises(TransportError, match=r"^ModelError \(container status 422\): Received client error"):
        SageMakerRuntimeTransport("stratos-x", client=client).invoke({"inputs": "x"})


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--concurrency", "0", "--concurrency: Input should be greater than or equal to 1"),
        ("--max-seconds", "0", "--max-seconds: Input should be greater than 0"),
        ("--output-tokens", "0", "--output-tokens: Input should be greater than or equal to 1"),
        ("--prompt-tokens", "-3", "--prompt-tokens: Input should be greater than or equal to 1"),
    ],
)
def test_a_zero_or_negative_flag_is_refused_naming_it_never_replaced_by_the_default(flag, value, message, capsys):
    from stratos_cli.cli import main

    assert main(["loadtest", "any-endpoint", flag, value]) == 2  # refused before any endpoint is looked up
    assert message in capsys.readouterr().err
