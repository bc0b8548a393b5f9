"""The local endpoint's model answers TGI's ``details`` as TGI does: the generated tokens with their
log-probabilities, and with ``top_n_tokens`` the likeliest alternatives per generated token (what an endpoint
teacher's top-k KD reads), on a tiny exported model."""

from __future__ import annotations

import json
import math

import pytest

from stratos_cli.local.serving.model import ServingModel
from stratos_cli.local.serving.request import parse_request
from stratos_train.export import export_source


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    folder = tmp_path_factory.mktemp("tiny-served")
    export_source("tiny:3", folder, max_new_tokens=16)
    return ServingModel(folder, threads=1)


def _ask(model: ServingModel, **parameters: object) -> dict[str, object]:
    body = {"inputs": [{"role": "user", "content": "hello world"}], "parameters": {"do_sample": False, **parameters}}
    generation = model.generate_details(parse_request(json.dumps(body).encode()))
    details = generation.details(None, False)
    return {"text": generation.text, **details}


def test_details_list_every_generated_token_with_its_log_probability(served: ServingModel) -> None:
    answer = _ask(served, max_new_tokens=6, details=True)
    tokens = answer["tokens"]
    assert isinstance(tokens, list) and len(tokens) == answer["generated_tokens"]
    assert "top_tokens" not in answer  # not asked
    for token in tokens:
        assert set(token) == {"id", "text", "logprob", "special"}
        assert token["text"] == served.tokenizer.decode([token["id"]]) and token["logprob"] <= 0
    stop = [t for t in tokens if t["id"] in served.stop_ids]
    assert all(t["special"] for t in stop)
    kept = [t["id"] for t in tokens if t["id"] not in served.stop_ids]
    assert served.tokenizer.decode(kept, skip_special_tokens=True) == answer["text"]


def test_top_n_tokens_lists_the_likeliest_alternatives_greedy_first(served: ServingModel) -> None:
    answer = _ask(served, max_new_tokens=6, details=True, top_n_tokens=4)
    tokens, top = answer["tokens"], answer["top_tokens"]
    assert isinstance(tokens, list) and isinstance(top, list) and len(top) == len(tokens)
    for chosen, alternatives in zip(tokens, top, strict=True):
        assert len(alternatives) == 4
        assert alternatives[0]["id"] == chosen["id"]  # greedy: the chosen token is the likeliest
        assert alternatives[0]["logprob"] == pytest.approx(chosen["logprob"])
        logprobs = [a["logprob"] for a in alternatives]
        assert logprobs == sorted(logprobs, reverse=True) and sum(math.exp(lp) for lp in logprobs) <= 1 + 1e-6
        assert len({a["id"] for a in alternatives}) == 4


def test_a_stop_string_ends_the_token_list_where_it_completes(served: ServingModel) -> None:
    free = _ask(served, max_new_tokens=8, details=True)
    text = str(free["text"])
    if len(text) < 2:
        pytest.skip(f"the tiny model's greedy text {text!r} is too short to cut")
    marker = text[1]
    cut = _ask(served, max_new_tokens=8, details=True, stop=[marker])
    assert cut["finish_reason"] == "stop_sequence" and marker not in str(cut["text"])
    tokens = cut["tokens"]
    assert isinstance(tokens, list) and len(tokens) == cut["generated_tokens"] <= free["generated_tokens"]
    assert marker in served.tokenizer.decode([t["id"] for t in tokens])
