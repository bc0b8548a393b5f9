"""Invocation bodies of the local endpoint: accepted shapes, decoding defaults, rejections naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratos_cli.local.serving import MAX_NEW_TOKENS_LIMIT, PARAMETERS, RequestError, parse_request


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


def test_prompt_string_becomes_one_user_message_decoded_greedily():
    request = parse_request(body({"inputs": "Which tiles complete 123m456p789s1122z?"}))
    assert request.messages == ({"role": "user", "content": "Which tiles complete 123m456p789s1122z?"},)
    assert request.do_sample is False
    assert request.max_new_tokens is None
    assert request.stop == ()


def test_chat_messages_under_inputs_or_messages_are_the_same_request():
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    a = parse_request(body({"inputs": turns, "parameters": {"max_new_tokens": 7}}))
    b = parse_request(body({"messages": turns, "parameters": {"max_new_tokens": 7}}))
    assert a == b
    assert [m["role"] for m in a.messages] == ["system", "user"]
    assert a.max_new_tokens == 7


@pytest.mark.parametrize(
    ("parameters", "do_sample", "temperature"),
    [
        ({}, False, None),
        ({"temperature": 0}, False, 0.0),  # 0 = greedy (OpenAI's convention)
        ({"temperature": 0.7}, True, 0.7),  # temperature alone switches sampling on, as in TGI
        ({"temperature": 0.7, "do_sample": False}, False, 0.7),  # an explicit do_sample wins
        ({"do_sample": True}, True, None),
    ],
)
def test_decoding_mode(parameters: dict[str, Any], do_sample: bool, temperature: float | None):
    request = parse_request(body({"inputs": "x", "parameters": parameters}))
    assert request.do_sample is do_sample
    assert request.temperature == temperature


def test_sampling_parameters_are_kept():
    request = parse_request(
        body({"inputs": "x", "parameters": {"do_sample": True, "top_p": 0.9, "top_k": 20, "seed": 3, "stop": ["\n"]}})
    )
    assert (request.top_p, request.top_k, request.seed, request.stop) == (0.9, 20, 3, ("\n",))


REJECTIONS = [
    (b"{not json", "<body>"),
    (b"\xff\xfe", "<body>"),
    (body(["inputs"]), "<body>"),
    (body({}), "inputs"),
    (body({"prompt": "x"}), "prompt"),
    (body({"inputs": 5}), "inputs"),
    (body({"inputs": "   "}), "inputs"),
    (body({"inputs": "x", "messages": [{"role": "user", "content": "x"}]}), "messages"),
    (body({"messages": []}), "messages"),
    (body({"messages": ["hi"]}), "messages[0]"),
    (body({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}), "messages[1].role"),
    (body({"inputs": [{"role": "user"}]}), "inputs[0].content"),
    (body({"inputs": [{"role": "user", "content": "a", "name": "n"}]}), "inputs[0].name"),
    (body({"inputs": "x", "parameters": [1]}), "parameters"),
    (body({"inputs": "x", "parameters": {"num_beams": 2}}), "parameters.num_beams"),
    (body({"inputs": "x", "parameters": {"max_new_tokens": "ten"}}), "parameters.max_new_tokens"),
    (body({"inputs": "x", "parameters": {"max_new_tokens": True}}), "parameters.max_new_tokens"),
    (body({"inputs": "x", "parameters": {"max_new_tokens": 0}}), "parameters.max_new_tokens"),
    (
        body({"inputs": "x", "parameters": {"max_new_tokens": MAX_NEW_TOKENS_LIMIT + 1}}),
        "parameters.max_new_tokens",
    ),
    (body({"inputs": "x", "parameters": {"temperature": -1}}), "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"do_sample": True, "temperature": 0}}), "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"do_sample": "yes"}}), "parameters.do_sample"),
    (body({"inputs": "x", "parameters": {"top_p": 0}}), "parameters.top_p"),
    (body({"inputs": "x", "parameters": {"stop": [""]}}), "parameters.stop"),
    (b'{"inputs": "x", "parameters": {"temperature": Infinity}}', "parameters.temperature"),
    (b'{"inputs": "x", "parameters": {"temperature": NaN}}', "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"temperature": 1e300}}), "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"seed": 10**30}}), "parameters.seed"),
    (body({"inputs": "x", "parameters": {"seed": 1e30}}), "parameters.seed"),
    (body({"inputs": "x", "parameters": {"top_k": 10**11}}), "parameters.top_k"),
    (b"[" * 100_000 + b"]" * 100_000, "<body>"),
    (b'{"inputs": "\\ud800"}', "<body>"),
    (body({"inputs": []}), "inputs"),
    (body({"inputs": None}), "inputs"),
    (body({"inputs": {"role": "user", "content": "x"}}), "inputs"),
    (body({"inputs": [{"role": "user", "content": 5}]}), "inputs[0].content"),
    (body({"inputs": [{"role": "user", "content": "a"}, "b"]}), "inputs[1]"),
    (body({"messages": None}), "messages"),
    (body({"messages": "hi"}), "messages"),
    (body({"inputs": "x", "parameters": "p"}), "parameters"),
    (body({"inputs": "x", "parameters": {"max_new_tokens": 2.5}}), "parameters.max_new_tokens"),
    (body({"inputs": "x", "parameters": {"do_sample": 1}}), "parameters.do_sample"),
    (body({"inputs": "x", "parameters": {"temperature": "0.7"}}), "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"temperature": 101}}), "parameters.temperature"),
    (body({"inputs": "x", "parameters": {"top_p": 1.5}}), "parameters.top_p"),
    (body({"inputs": "x", "parameters": {"top_p": "0.5"}}), "parameters.top_p"),
    (body({"inputs": "x", "parameters": {"top_k": -1}}), "parameters.top_k"),
    (body({"inputs": "x", "parameters": {"top_k": 2.5}}), "parameters.top_k"),
    (body({"inputs": "x", "parameters": {"seed": -1}}), "parameters.seed"),
    (body({"inputs": "x", "parameters": {"seed": "3"}}), "parameters.seed"),
    (body({"inputs": "x", "parameters": {"stop": "\n"}}), "parameters.stop"),
    (body({"inputs": "x", "parameters": {"stop": [1]}}), "parameters.stop"),
    (body({"inputs": "x", "parameters": {"details": "yes"}}), "parameters.details"),
    (
        body({"inputs": "x", "parameters": {"details": True, "decoder_input_details": 1}}),
        "parameters.decoder_input_details",
    ),
    (body({"inputs": "x", "parameters": {"details": True, "top_n_tokens": 21}}), "parameters.top_n_tokens"),
    (body({"inputs": "x", "parameters": {"details": True, "top_n_tokens": -1}}), "parameters.top_n_tokens"),
]
"""Bodies the parser must reject, with the field each rejection names."""


@pytest.mark.parametrize(("raw", "field"), REJECTIONS)
def test_rejections_name_the_field(raw: bytes, field: str):
    with pytest.raises(RequestError) as info:
        parse_request(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.status == 400


def test_every_field_has_rejections():
    """Each parameter, and each source of turns, is checked by at least one case above: a field added to
    ``Parameters`` without a rejection case fails here."""
    fields = {field.split("[")[0] for _, field in REJECTIONS}
    assert {f"parameters.{name}" for name in PARAMETERS} <= fields
    assert {"<body>", "inputs", "messages", "parameters"} <= fields
