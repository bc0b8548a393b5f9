"""The local side of the load test: the local server's TGI ``details`` (request parameters and answer shape) and
guards on the moto internals the sagemaker-runtime hook patches (moto is pinned; these name the hook to re-check)."""

from __future__ import annotations

import inspect

import pytest

from stratos_cli.local.moto_hooks import ContainerAnswer, DefaultAccount, EndpointInvocation, signature_of
from stratos_cli.local.serving import Generation, RequestError, parse_request


def test_details_and_decoder_input_details_are_tgi_parameters():
    request = parse_request(b'{"inputs": "hi", "parameters": {"details": true, "decoder_input_details": true}}')
    assert request.details and request.decoder_input_details
    # decoder_input_details means something only with details, as in TGI.
    assert not parse_request(b'{"inputs": "hi", "parameters": {"decoder_input_details": true}}').decoder_input_details
    assert not parse_request(b'{"inputs": "hi"}').details
    with pytest.raises(RequestError, match=r"parameters.details: must be true or false"):
        parse_request(b'{"inputs": "hi", "parameters": {"details": "yes"}}')


def test_generation_details_are_tgis_fields():
    generation = Generation(text="2m", generated_tokens=5, finish_reason="eos_token", prefill=((1, "<s>"), (9, "hi")))
    assert generation.details(seed=None, with_prefill=True) == {
        "finish_reason": "eos_token",
        "generated_tokens": 5,
        "seed": None,
        "prefill": [{"id": 1, "text": "<s>", "logprob": None}, {"id": 9, "text": "hi", "logprob": None}],
        "tokens": [],  # not computed for this generation
    }
    assert generation.details(seed=7, with_prefill=False)["prefill"] == []
    scored = Generation(
        text="2m",
        generated_tokens=2,
        finish_reason="eos_token",
        prefill=(),
        tokens=((5, "2m", -0.1), (2, "</s>", -0.3)),
        top_tokens=(((5, "2m", -0.1), (6, "3m", -2.5)), ((2, "</s>", -0.3), (7, "\n", -1.6))),
        special_ids=frozenset({2}),
    )
    details = scored.details(seed=None, with_prefill=False)
    assert details["tokens"][1] == {"id": 2, "text": "</s>", "logprob": -0.3, "special": True}
    assert details["top_tokens"][0][1] == {"id": 6, "text": "3m", "logprob": -2.5, "special": False}


def test_the_default_account_lets_the_endpoints_model_answer():
    call = EndpointInvocation("e", "c", "m", "s3://b/k/model.tar.gz", b"{}", "application/json")
    assert DefaultAccount().invoke_endpoint(call) is None
    assert ContainerAnswer(424, b"x").status == 424


def test_sagemaker_runtime_response_shape():
    pytest.importorskip("moto")
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker.models import Model, SageMakerModelBackend
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    assert signature_of(SageMakerRuntimeResponse.invoke_endpoint) == ["self"]
    source = inspect.getsource(SageMakerRuntimeResponse.invoke_endpoint)
    # moto still answers canned bodies (else the hook would hide a real implementation).
    assert "sagemakerruntime_backend.invoke_endpoint" in source
    assert "primary_container" in signature_of(Model.__init__)
    backend_source = inspect.getsource(SageMakerModelBackend.__init__)
    assert "self.endpoints" in backend_source and "self.endpoint_configs" in backend_source
    assert "self._models" in backend_source
    assert signature_of(JsonRESTError.__init__)[:3] == ["self", "error_type", "message"]
