"""External teachers (Bedrock Converse, a TGI-shaped SageMaker endpoint): source parsing, reply parsing on
recorded response shapes (botocore's Stubber), retries on throttling, the reply cache, usage and bounded
concurrency.

Stubber answers at botocore's ``before-call`` event, before the retry loop, so a stubbed error is final: the
retry path itself is tested by answering at ``before-send`` instead (inside the loop, after signing).
"""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from botocore.retries import bucket, standard
from botocore.stub import Stubber

from stratos_train.teachers import (
    DEFAULT_MAX_ATTEMPTS,
    PLAIN_CHAT_STOP,
    BedrockTeacher,
    ExternalTeacherRef,
    ReplyCache,
    SageMakerEndpointTeacher,
    TeacherError,
    TeacherReply,
    build_external_teacher,
    parse_teacher_source,
    render_plain_chat,
)
from tests.conftest import offline_aws

REGION = "us-east-1"
MODEL = "amazon.nova-lite-v1:0"
ENDPOINT = "stratos-teacher-gemma"
SYSTEM = {"role": "system", "content": "You solve arithmetic problems."}
PROMPT = [SYSTEM, {"role": "user", "content": "What is 2 + 3?"}]
OTHER = [{"role": "user", "content": "What is 4 + 4?"}]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Nothing here may reach AWS (:func:`tests.conftest.offline_aws`)."""
    offline_aws(monkeypatch, tmp_path)


# --- recorded response shapes -------------------------------------------------------------------------------


def converse_response(text: str, stop: str = "end_turn", tokens: tuple[int, int] = (21, 7)) -> dict[str, Any]:
    """A Converse response as bedrock-runtime returns it (output, stopReason, usage, metrics)."""
    content = [{"text": text}] if text else []
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
        "metrics": {"latencyMs": 412},
    }


#: A TGI answer to ``details: true, decoder_input_details: true, top_n_tokens: 2`` through SageMaker's
#: /invocations (a one-element list), the fields as TGI's OpenAPI documents them.
TGI_ANSWER = [
    {
        "generated_text": " 5",
        "details": {
            "finish_reason": "eos_token",
            "generated_tokens": 2,
            "seed": None,
            "prefill": [
                {"id": 2, "text": "<bos>", "logprob": None},
                {"id": 3689, "text": "What", "logprob": -8.25},
                {"id": 603, "text": " is", "logprob": -1.5},
            ],
            "tokens": [
                {"id": 235248, "text": " ", "logprob": -0.11, "special": False},
                {"id": 235308, "text": "5", "logprob": -0.02, "special": False},
            ],
            "top_tokens": [
                [
                    {"id": 235248, "text": " ", "logprob": -0.11, "special": False},
                    {"id": 235274, "text": " 6", "logprob": -2.3, "special": False},
                ],
                [
                    {"id": 235308, "text": "5", "logprob": -0.02, "special": False},
                    {"id": 235310, "text": "4", "logprob": -4.0, "special": False},
                ],
            ],
        },
    }
]


def invoke_response(answer: Any) -> dict[str, Any]:
    data = json.dumps(answer).encode()
    return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json"}


def describe_response(status: str, failure: str | None = None) -> dict[str, Any]:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    response: dict[str, Any] = {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": f"{ENDPOINT}-config",
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
    }
    if failure:
        response["FailureReason"] = failure
    return response


# --- parse_teacher_source -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "target"),
    [
        ("bedrock:amazon.nova-lite-v1:0", "bedrock", "amazon.nova-lite-v1:0"),
        (
            "bedrock:us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "bedrock",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        ),
        ("bedrock:meta.llama3-1-8b-instruct-v1:0", "bedrock", "meta.llama3-1-8b-instruct-v1:0"),
        (
            "bedrock:arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-pro-v1:0",
            "bedrock",
            "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-pro-v1:0",
        ),
        (
            "bedrock:arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "bedrock",
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
        ),
        ("sagemaker-endpoint:stratos-teacher-gemma", "sagemaker-endpoint", "stratos-teacher-gemma"),
        ("sagemaker-endpoint:A" + "b" * 62, "sagemaker-endpoint", "A" + "b" * 62),
        ("sagemaker-endpoint:tgi--llama3", "sagemaker-endpoint", "tgi--llama3"),
    ],
)
def test_external_sources_parse(source: str, kind: str, target: str) -> None:
    assert parse_teacher_source(source) == ExternalTeacherRef(kind=kind, target=target, source=source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "source",
    [
        *("smollm2-135m-instruct", "gemma-3-270m@layers=10", "channel:teacher", "dir:/opt/ml/model", "/abs/path"),
        *("tiny:3", "Bedrock:amazon.nova-lite-v1:0", "bedrock", "sagemaker-endpoint"),
    ],
)
def test_other_sources_are_hugging_face_sources(source: str) -> None:
    assert parse_teacher_source(source) is None


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("bedrock:", "give a Bedrock model id"),
        ("bedrock:claude", "not a Bedrock model id"),
        ("bedrock:amazon.nova lite", "not a Bedrock model id"),
        ("bedrock:amazon/nova", "not a Bedrock model id"),
        ("bedrock:arn:aws:s3:::bucket/key", "not a Bedrock model ARN"),
        ("bedrock:arn:aws:bedrock:us-east-1:123456789012:prompt/ABCDEFGHIJ", "not a Bedrock model ARN"),
        ("sagemaker-endpoint:", "not a SageMaker endpoint name"),
        ("sagemaker-endpoint:-leading", "not a SageMaker endpoint name"),
        ("sagemaker-endpoint:trailing-", "not a SageMaker endpoint name"),
        ("sagemaker-endpoint:under_score", "not a SageMaker endpoint name"),
        ("sagemaker-endpoint:" + "a" * 64, "not a SageMaker endpoint name"),
    ],
)
def test_bad_external_sources_name_the_hyperparameter_and_the_reason(source: str, reason: str) -> None:
    with pytest.raises(TeacherError, match=reason) as caught:
        parse_teacher_source(source)
    assert str(caught.value).startswith(f"teacher: {source!r}")
    assert isinstance(caught.value, ValueError)


def test_an_arn_names_its_region_and_must_be_the_jobs() -> None:
    ref = parse_teacher_source("bedrock:arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-pro-v1:0")
    assert ref is not None and ref.arn_region == "us-west-2"
    with pytest.raises(TeacherError, match="us-west-2"):
        build_external_teacher(ref, region="eu-west-1")
    assert isinstance(build_external_teacher(ref, region="us-west-2"), BedrockTeacher)


def test_build_external_teacher_picks_the_kind_and_refuses_bedrock_top_k() -> None:
    endpoint = parse_teacher_source(f"sagemaker-endpoint:{ENDPOINT}")
    bedrock = parse_teacher_source(f"bedrock:{MODEL}")
    assert endpoint is not None and bedrock is not None
    built = build_external_teacher(endpoint, region=REGION, top_k=5)
    assert isinstance(built, SageMakerEndpointTeacher) and built.top_k == 5
    with pytest.raises(TeacherError, match="no log-probabilities"):
        build_external_teacher(bedrock, region=REGION, top_k=5)


@pytest.mark.parametrize(
    "settings",
    [{"region": ""}, {"concurrency": 0}, {"max_attempts": 0}, {"input_usd_per_1k": -1.0}, {"read_timeout_s": 0}],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"region": REGION, **settings}
    with pytest.raises(TeacherError):
        BedrockTeacher(MODEL, **kwargs)


# --- retry configuration ------------------------------------------------------------------------------------


def test_clients_retry_adaptively_with_a_pool_as_large_as_the_concurrency() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION, concurrency=16)
    config = teacher.client.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": DEFAULT_MAX_ATTEMPTS}
    assert config.max_pool_connections == 16
    assert config.region_name == REGION == teacher.client.meta.region_name


# --- Bedrock ------------------------------------------------------------------------------------------------


def test_bedrock_request_is_converse_content_blocks_with_greedy_max_tokens() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    messages = [SYSTEM, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    messages += [{"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]
    assert teacher.request_body(messages, 64) == {
        "system": [{"text": "You solve arithmetic problems."}],
        "messages": [
            {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
            {"role": "assistant", "content": [{"text": "c"}]},
            {"role": "user", "content": [{"text": "d"}]},
        ],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0},
    }
    with pytest.raises(TeacherError, match="only system"):
        teacher.request_body([SYSTEM], 8)
    with pytest.raises(TeacherError, match="role 'tool'"):
        teacher.request_body([{"role": "tool", "content": "x"}], 8)


def test_bedrock_success_counts_usage_and_prices_it() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION, input_usd_per_1k=0.06, output_usd_per_1k=0.24)
    with Stubber(teacher.client) as stub:
        stub.add_response(
            "converse",
            converse_response("2 + 3 = 5.\nAnswer: 5", tokens=(1000, 500)),
            {
                "modelId": MODEL,
                "system": [{"text": SYSTEM["content"]}],
                "messages": [{"role": "user", "content": [{"text": "What is 2 + 3?"}]}],
                "inferenceConfig": {"maxTokens": 128, "temperature": 0},
            },
        )
        [reply] = teacher.generate([PROMPT], max_new_tokens=128)
        stub.assert_no_pending_responses()
    assert reply == TeacherReply(text="2 + 3 = 5.\nAnswer: 5", stop="end", input_tokens=1000, output_tokens=500)
    usage = teacher.usage.as_dict()
    assert usage["calls"] == 1 and usage["cache_hits"] == 0 and usage["retries"] == 0
    assert (usage["input_tokens"], usage["output_tokens"]) == (1000, 500)
    assert usage["usd"] == pytest.approx(1.0 * 0.06 + 0.5 * 0.24)
    assert usage["replies_by_stop"] == {"end": 1, "max_tokens": 0, "filtered": 0, "error": 0}


def test_bedrock_text_joins_text_blocks_and_skips_reasoning() -> None:
    response = converse_response("")
    response["output"]["message"]["content"] = [
        {"reasoningContent": {"reasoningText": {"text": "let me think"}}},
        {"text": "Answer: "},
        {"text": "5"},
    ]
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", response)
        assert teacher.texts([OTHER], max_new_tokens=16) == ["Answer: 5"]


def test_bedrock_max_tokens_keeps_the_text() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("2 + 3 is", stop="max_tokens", tokens=(21, 4)))
        [reply] = teacher.generate([PROMPT], max_new_tokens=4)
    assert (reply.text, reply.stop, reply.output_tokens) == ("2 + 3 is", "max_tokens", 4)


@pytest.mark.parametrize("reason", ["content_filtered", "guardrail_intervened"])
def test_bedrock_filtered_drops_the_text(reason: str) -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("partial", stop=reason, tokens=(21, 0)))
        [reply] = teacher.generate([PROMPT], max_new_tokens=64)
    assert (reply.text, reply.stop, reply.detail) == ("", "filtered", reason)
    assert teacher.usage.as_dict()["replies_by_stop"]["filtered"] == 1


def test_bedrock_unexpected_stop_reason_is_an_error() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("", stop="model_context_window_exceeded"))
        [reply] = teacher.generate([PROMPT], max_new_tokens=64)
    assert reply.stop == "error" and "model_context_window_exceeded" in reply.detail


def test_bedrock_throttling_that_outlasts_the_retries_is_an_error_reply_not_a_crash() -> None:
    """Stubber answers before the retry loop: a stubbed ThrottlingException is the call's final answer, as
    after the last of the client's attempts."""
    teacher = BedrockTeacher(MODEL, region=REGION, max_attempts=3, concurrency=1)
    with Stubber(teacher.client) as stub:
        stub.add_client_error("converse", "ThrottlingException", "Too many requests, please wait.", 429)
        stub.add_response("converse", converse_response("Answer: 8"))
        replies = teacher.generate([PROMPT, OTHER], max_new_tokens=32)
    assert replies[0].stop == "error" and replies[0].text == ""
    assert replies[0].detail == "ThrottlingException: Too many requests, please wait."
    assert replies[1].text == "Answer: 8"
    assert teacher.usage.as_dict()["replies_by_stop"] == {"end": 1, "max_tokens": 0, "filtered": 0, "error": 1}


def _answer_at_send(client: Any, answers: list[tuple[int, dict[str, str], Any]]) -> list[int]:
    """Answer ``client``'s HTTP requests with ``answers`` in turn, at ``before-send`` (inside botocore's retry
    loop, unlike Stubber); returns the list the attempts are counted into."""
    attempts: list[int] = []

    def send(request: Any, **kwargs: Any) -> AWSResponse:
        status, headers, body = answers.pop(0)
        attempts.append(status)
        response = AWSResponse(request.url, status, {"content-type": "application/json", **headers}, None)
        response._content = json.dumps(body).encode()
        return response

    client.meta.events.register_first("before-send", send)
    return attempts


def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry at once: no backoff sleep, and the adaptive rate limiter's token bucket never makes a send wait
    (botocore's pacing is botocore's to test; these tests count what the retries did)."""
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    monkeypatch.setattr(bucket.TokenBucket, "acquire", lambda self, amount=1, block=True: True)


def test_bedrock_throttling_then_success_is_retried_by_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_waiting(monkeypatch)
    teacher = BedrockTeacher(MODEL, region=REGION, max_attempts=3)
    throttled = (429, {"x-amzn-ErrorType": "ThrottlingException"}, {"message": "Too many requests"})
    attempts = _answer_at_send(teacher.client, [throttled, throttled, (200, {}, converse_response("Answer: 5"))])
    [reply] = teacher.generate([PROMPT], max_new_tokens=32)
    assert attempts == [429, 429, 200]
    assert (reply.text, reply.stop) == ("Answer: 5", "end")
    usage = teacher.usage.as_dict()
    assert (usage["calls"], usage["retries"], usage["throttled"]) == (1, 2, 2)


def test_bedrock_throttling_past_max_attempts_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_waiting(monkeypatch)
    teacher = BedrockTeacher(MODEL, region=REGION, max_attempts=2)
    throttled = (429, {"x-amzn-ErrorType": "ThrottlingException"}, {"message": "Too many requests"})
    attempts = _answer_at_send(teacher.client, [throttled, throttled])
    [reply] = teacher.generate([PROMPT], max_new_tokens=32)
    assert attempts == [429, 429] and reply.stop == "error" and "ThrottlingException" in reply.detail
    usage = teacher.usage.as_dict()
    assert (usage["calls"], usage["retries"], usage["throttled"]) == (1, 1, 2)


def test_bedrock_check_reachable_is_one_tiny_converse() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response(
            "converse",
            converse_response("OK", stop="max_tokens", tokens=(9, 1)),
            {
                "modelId": MODEL,
                "messages": [{"role": "user", "content": [{"text": "Reply with OK."}]}],
                "inferenceConfig": {"maxTokens": 1, "temperature": 0},
            },
        )
        teacher.check_reachable()
    usage = teacher.usage.as_dict()
    assert (usage["calls"], usage["input_tokens"], usage["output_tokens"]) == (1, 9, 1)
    assert sum(usage["replies_by_stop"].values()) == 0


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
        ("ValidationException", "The provided model identifier is invalid."),
        ("ResourceNotFoundException", "Model not found."),
    ],
)
def test_bedrock_check_reachable_fails_clearly(code: str, message: str) -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_client_error("converse", code, message, 400)
        with pytest.raises(TeacherError, match=f"bedrock:{MODEL} is not reachable in {REGION}: {code}: "):
            teacher.check_reachable()


def test_bedrock_check_reachable_passes_when_only_throttled() -> None:
    teacher = BedrockTeacher(MODEL, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
        teacher.check_reachable()


# --- SageMaker endpoint (TGI shape) -------------------------------------------------------------------------


def test_endpoint_request_is_tgi_shaped() -> None:
    chat = SageMakerEndpointTeacher(ENDPOINT, region=REGION, top_k=2)
    assert chat.request_body(PROMPT, 64) == {
        "inputs": PROMPT,
        "parameters": {
            "max_new_tokens": 64,
            "do_sample": False,
            "details": True,
            "decoder_input_details": True,
            "top_n_tokens": 2,
        },
    }
    text = SageMakerEndpointTeacher(ENDPOINT, region=REGION, prompt_format="text")
    body = text.request_body(PROMPT, 64)
    assert body["inputs"] == "System: You solve arithmetic problems.\n\nUser: What is 2 + 3?\n\nAssistant:"
    assert body["parameters"]["stop"] == [PLAIN_CHAT_STOP] and "top_n_tokens" not in body["parameters"]


def test_the_chat_request_is_one_the_local_endpoint_server_accepts() -> None:
    request_module = pytest.importorskip("stratos_cli.local.serving.request")
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION, top_k=5)
    body = json.dumps(teacher.request_body(PROMPT, 48)).encode()
    parsed = request_module.parse_request(body)
    assert parsed.messages == tuple(PROMPT)
    assert (parsed.top_n_tokens, parsed.details) == (5, True)
    assert (parsed.max_new_tokens, parsed.do_sample, parsed.details, parsed.decoder_input_details) == (
        48,
        False,
        True,
        True,
    )


def test_endpoint_tgi_answer_with_details_and_top_tokens() -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION, top_k=2)
    with Stubber(teacher.client) as stub:
        stub.add_response("invoke_endpoint", invoke_response(TGI_ANSWER))
        [reply] = teacher.generate([PROMPT], max_new_tokens=8)
    assert reply.text == " 5" and reply.stop == "end"
    assert (reply.input_tokens, reply.output_tokens) == (3, 2)
    assert reply.top_logprobs == (
        ((235248, " ", -0.11), (235274, " 6", -2.3)),
        ((235308, "5", -0.02), (235310, "4", -4.0)),
    )
    assert reply.tokens == ((235248, " ", -0.11), (235308, "5", -0.02))
    assert teacher.usage.as_dict()["output_tokens"] == 2


def test_endpoint_answer_without_details_and_length_stop() -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION, prompt_format="text", concurrency=1)
    with Stubber(teacher.client) as stub:
        stub.add_response("invoke_endpoint", invoke_response([{"generated_text": " 5" + PLAIN_CHAT_STOP}]))
        stub.add_response(
            "invoke_endpoint",
            invoke_response({"generated_text": "2 + 3", "details": {"finish_reason": "length", "generated_tokens": 4}}),
        )
        first, second = teacher.generate([PROMPT, OTHER], max_new_tokens=4)
    assert first == TeacherReply(text=" 5", stop="end")  # the stop sequence is cut; no details -> 0 tokens
    assert (second.text, second.stop, second.output_tokens, second.top_logprobs) == ("2 + 3", "max_tokens", 4, None)


def test_endpoint_model_error_is_an_error_reply_for_that_prompt_only() -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION, concurrency=1)
    with Stubber(teacher.client) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            "ModelError",
            "Received client error (400) from primary with message ...",
            424,
            modeled_fields={
                "OriginalStatusCode": 400,
                "OriginalMessage": '{"error": "parameters.top_n_tokens: unsupported parameter"}',
                "LogStreamArn": f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}",
            },
        )
        stub.add_response("invoke_endpoint", invoke_response(TGI_ANSWER))
        first, second = teacher.generate([PROMPT, OTHER], max_new_tokens=8)
    assert first.stop == "error" and first.text == ""
    assert first.detail == (
        'ModelError: the container answered 400: {"error": "parameters.top_n_tokens: unsupported parameter"}'
    )
    assert second.stop == "end"
    assert teacher.usage.as_dict()["replies_by_stop"]["error"] == 1


def test_endpoint_answer_that_is_not_tgi_is_an_error_reply() -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION)
    with Stubber(teacher.client) as stub:
        stub.add_response("invoke_endpoint", invoke_response({"outputs": "no"}))
        [reply] = teacher.generate([PROMPT], max_new_tokens=8)
    assert reply.stop == "error" and reply.detail.startswith("not a TGI answer")


@pytest.mark.parametrize("status", ["InService", "Updating", "SystemUpdating"])
def test_endpoint_check_reachable_accepts_serving_endpoints(status: str) -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION)
    with Stubber(teacher.control_client) as stub:
        stub.add_response("describe_endpoint", describe_response(status), {"EndpointName": ENDPOINT})
        teacher.check_reachable()
    assert teacher.usage.as_dict()["calls"] == 0  # nothing invoked, nothing generated


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        ("Creating", None, "the endpoint is Creating, not InService"),
        ("Failed", "Image pull failed", r"the endpoint is Failed \(Image pull failed\), not InService"),
        ("OutOfService", None, "the endpoint is OutOfService"),
    ],
)
def test_endpoint_check_reachable_refuses_an_endpoint_not_in_service(
    status: str, failure: str | None, expected: str
) -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION)
    with Stubber(teacher.control_client) as stub:
        stub.add_response("describe_endpoint", describe_response(status, failure))
        with pytest.raises(TeacherError, match=expected):
            teacher.check_reachable()


def test_endpoint_check_reachable_refuses_a_missing_endpoint() -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}"
    with Stubber(teacher.control_client) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{arn}".', 400)
        with pytest.raises(TeacherError, match=f"no such endpoint in {REGION}"):
            teacher.check_reachable()
    with Stubber(teacher.control_client) as stub:
        stub.add_client_error("describe_endpoint", "AccessDeniedException", "not authorized", 400)
        with pytest.raises(TeacherError, match="cannot describe the endpoint.*AccessDeniedException"):
            teacher.check_reachable()


# --- the reply cache ----------------------------------------------------------------------------------------


def test_cache_answers_a_rerun_with_zero_calls(tmp_path: Any) -> None:
    first = BedrockTeacher(MODEL, region=REGION, cache_dir=tmp_path, concurrency=1)
    with Stubber(first.client) as stub:
        stub.add_response("converse", converse_response("Answer: 5"))
        stub.add_response("converse", converse_response("Answer: 8"))
        replies = first.generate([PROMPT, OTHER], max_new_tokens=32)
        stub.assert_no_pending_responses()
    files = sorted(tmp_path.glob("*/*.json"))
    assert len(files) == 2
    assert all(path.parent.name == path.stem[:2] and len(path.stem) == 64 for path in files)

    rerun = BedrockTeacher(MODEL, region=REGION, cache_dir=tmp_path)  # a re-run job: a fresh client, same folder
    with Stubber(rerun.client):  # nothing queued: any call would fail
        again = rerun.generate([PROMPT, OTHER], max_new_tokens=32)
    assert [(r.text, r.stop, r.input_tokens, r.output_tokens) for r in again] == [
        (r.text, r.stop, r.input_tokens, r.output_tokens) for r in replies
    ]
    assert all(r.cached for r in again) and not any(r.cached for r in replies)
    usage = rerun.usage.as_dict()
    assert (usage["calls"], usage["cache_hits"], usage["input_tokens"], usage["usd"]) == (0, 2, 0, 0.0)
    assert usage["replies_by_stop"]["end"] == 2


def test_cache_key_covers_max_new_tokens_target_and_top_k(tmp_path: Any) -> None:
    teacher = BedrockTeacher(MODEL, region=REGION, cache_dir=tmp_path)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("Answer: 5"))
        stub.add_response("converse", converse_response("Answer: 5 because"))
        teacher.generate([PROMPT], max_new_tokens=32)
        teacher.generate([PROMPT], max_new_tokens=33)  # a different key: called again
        stub.assert_no_pending_responses()
    assert teacher.usage.as_dict()["calls"] == 2
    request = teacher.request_body(PROMPT, 32)
    keys = {
        ReplyCache.key("bedrock", MODEL, request),
        ReplyCache.key("bedrock", MODEL, teacher.request_body(PROMPT, 33)),
        ReplyCache.key("bedrock", "amazon.nova-pro-v1:0", request),
        ReplyCache.key("sagemaker-endpoint", MODEL, request),
    }
    endpoint_keys = {
        ReplyCache.key(
            "sagemaker-endpoint",
            ENDPOINT,
            SageMakerEndpointTeacher(ENDPOINT, region=REGION, top_k=k).request_body(PROMPT, 32),
        )
        for k in (0, 2, 5)
    }
    assert len(keys) == 4 and len(endpoint_keys) == 3
    assert ReplyCache.key("bedrock", MODEL, dict(reversed(request.items()))) in keys  # canonical: order-free


def test_cache_keeps_filtered_replies_but_not_errors(tmp_path: Any) -> None:
    teacher = BedrockTeacher(MODEL, region=REGION, cache_dir=tmp_path, concurrency=1)
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("", stop="content_filtered", tokens=(21, 0)))
        stub.add_client_error("converse", "ModelTimeoutException", "Model timed out", 408)
        teacher.generate([PROMPT, OTHER], max_new_tokens=32)
    assert len(list(tmp_path.glob("*/*.json"))) == 1
    with Stubber(teacher.client) as stub:
        stub.add_response("converse", converse_response("Answer: 8"))  # only the errored prompt is asked again
        filtered, answered = teacher.generate([PROMPT, OTHER], max_new_tokens=32)
        stub.assert_no_pending_responses()
    assert (filtered.stop, filtered.cached) == ("filtered", True)
    assert (answered.text, answered.cached) == ("Answer: 8", False)


def test_cache_round_trips_top_logprobs_and_ignores_damaged_files(tmp_path: Any) -> None:
    teacher = SageMakerEndpointTeacher(ENDPOINT, region=REGION, top_k=2, cache_dir=tmp_path)
    with Stubber(teacher.client) as stub:
        stub.add_response("invoke_endpoint", invoke_response(TGI_ANSWER))
        [called] = teacher.generate([PROMPT], max_new_tokens=8)
    [path] = tmp_path.glob("*/*.json")
    assert json.loads(path.read_text())["request"] == teacher.request_body(PROMPT, 8)
    [hit] = teacher.generate([PROMPT], max_new_tokens=8)
    assert hit.top_logprobs == called.top_logprobs and hit == TeacherReply(**{**called.__dict__, "cached": True})
    assert hit.tokens == called.tokens and hit.tokens is not None

    path.write_text("{not json")
    with Stubber(teacher.client) as stub:
        stub.add_response("invoke_endpoint", invoke_response(TGI_ANSWER))
        [again] = teacher.generate([PROMPT], max_new_tokens=8)
        stub.assert_no_pending_responses()
    assert not again.cached and json.loads(path.read_text())["reply"]["text"] == " 5"  # rewritten whole
    assert not list(tmp_path.glob("*/*.tmp"))


# --- bounded concurrency ------------------------------------------------------------------------------------


class CountingBedrockClient:
    """A stand-in for a bedrock-runtime client that counts calls in flight; each call waits (up to 0.5 s) for
    the others to arrive, and earlier prompts answer later, so completions come back out of order."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0
        self._changed = threading.Condition()

    def converse(self, **request: Any) -> dict[str, Any]:
        text = request["messages"][-1]["content"][0]["text"]
        with self._changed:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.in_flight >= self.concurrency, timeout=0.5)
        time.sleep(0.01 * (10 - int(text.split()[-1]) % 10))
        with self._changed:
            self.in_flight -= 1
        return converse_response(f"echo {text}")


def test_concurrency_is_bounded_and_order_kept() -> None:
    fake = CountingBedrockClient(concurrency=3)
    teacher = BedrockTeacher(MODEL, region=REGION, concurrency=3, client=fake)
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(12)]
    texts = teacher.texts(prompts, max_new_tokens=8)
    assert texts == [f"echo prompt {i}" for i in range(12)]
    assert fake.calls == 12 and fake.most_in_flight == 3
    assert teacher.usage.as_dict()["calls"] == 12


# --- small pieces -------------------------------------------------------------------------------------------


def test_render_plain_chat() -> None:
    messages = [SYSTEM, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    messages.append({"role": "user", "content": "Q2"})
    assert render_plain_chat(messages) == (
        "System: You solve arithmetic problems.\n\nUser: Q\n\nAssistant: A\n\nUser: Q2\n\nAssistant:"
    )
    with pytest.raises(TeacherError, match="no messages"):
        render_plain_chat([])


def test_max_new_tokens_must_be_positive() -> None:
    with pytest.raises(TeacherError, match="max_new_tokens"):
        BedrockTeacher(MODEL, region=REGION).generate([PROMPT], max_new_tokens=0)
