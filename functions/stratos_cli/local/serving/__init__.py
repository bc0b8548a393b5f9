"""Local endpoints: a SageMaker-hosting-compatible inference server and the registry of running ones.

The local deploy step stands in for a SageMaker endpoint with a process on this machine that speaks the same
hosting contract as a SageMaker inference container (and the Hugging Face LLM / TGI container deployed on
it): ``GET /ping`` and ``POST /invocations`` on 127.0.0.1. One module per concern, data flowing one way
(request -> model -> server; registry -> processes; client -> registry):

* :mod:`~stratos_cli.local.serving.request` — the invocation body as pydantic models, and the
  :class:`RequestError` (field + reason, HTTP 400) a rejected one becomes;
* :mod:`~stratos_cli.local.serving.model` — :class:`ServingModel`: load a deployed model dir, generate;
* :mod:`~stratos_cli.local.serving.pool` — :class:`InferencePool`: the inference workers and their bounded
  admission queue;
* :mod:`~stratos_cli.local.serving.server` — the HTTP server, its load limits (:class:`ServerLimits`) and its
  ``python -m`` entry point;
* :mod:`~stratos_cli.local.serving.processes` — spawn, recognise (psutil) and stop server processes;
* :mod:`~stratos_cli.local.serving.registry` — the endpoint registry (``$STRATOS_HOME/endpoints/*.json``):
  start (blue/green), list, get, stop; and unregistered servers (:func:`start_private_server`) for the
  embedded AWS's endpoints;
* :mod:`~stratos_cli.local.serving.client` — :func:`invoke` an endpoint by name; :class:`LocalTransport` for
  ``stratos loadtest``.

Run one server by hand with ``python -m stratos_cli.local.serving --model-dir DIR --port P --endpoint-name NAME``.

torch and transformers are imported only inside the server process's model loader.
"""

from __future__ import annotations

from stratos_cli.local.serving.client import (
    DEFAULT_BUSY_RETRIES,
    DEFAULT_INVOKE_TIMEOUT_S,
    InvocationError,
    LocalTransport,
    invoke,
)
from stratos_cli.local.serving.model import (
    DEFAULT_MAX_NEW_TOKENS,
    DetailedGenerator,
    Generation,
    ServingModel,
    TextGenerator,
)
from stratos_cli.local.serving.pool import InferencePool, PoolLoad
from stratos_cli.local.serving.processes import SERVER_MODULE, pid_alive
from stratos_cli.local.serving.registry import (
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    ENDPOINT_NAME_RE,
    HOME_ENV,
    EndpointInfo,
    EndpointNotFoundError,
    EndpointStartError,
    EndpointStatus,
    EndpointUnavailableError,
    PrivateServer,
    get_endpoint,
    list_endpoints,
    start_endpoint,
    start_private_server,
    state_dir,
    stop_all,
    stop_endpoint,
)
from stratos_cli.local.serving.request import (
    MAX_NEW_TOKENS_LIMIT,
    PARAMETERS,
    ROLES,
    GenerationRequest,
    InvocationBody,
    Message,
    Parameters,
    RequestError,
    parse_request,
)
from stratos_cli.local.serving.server import HOST, MAX_BODY_BYTES, InferenceServer, ServerLimits, main, serve

__all__ = [
    "DEFAULT_BUSY_RETRIES",
    "DEFAULT_INVOKE_TIMEOUT_S",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_START_TIMEOUT_S",
    "DEFAULT_STOP_TIMEOUT_S",
    "ENDPOINT_NAME_RE",
    "HOME_ENV",
    "HOST",
    "MAX_BODY_BYTES",
    "MAX_NEW_TOKENS_LIMIT",
    "PARAMETERS",
    "ROLES",
    "SERVER_MODULE",
    "DetailedGenerator",
    "EndpointInfo",
    "EndpointNotFoundError",
    "EndpointStartError",
    "EndpointStatus",
    "EndpointUnavailableError",
    "Generation",
    "GenerationRequest",
    "InferencePool",
    "InferenceServer",
    "InvocationBody",
    "InvocationError",
    "LocalTransport",
    "Message",
    "Parameters",
    "PoolLoad",
    "PrivateServer",
    "RequestError",
    "ServerLimits",
    "ServingModel",
    "TextGenerator",
    "get_endpoint",
    "invoke",
    "list_endpoints",
    "main",
    "parse_request",
    "pid_alive",
    "serve",
    "start_endpoint",
    "start_private_server",
    "state_dir",
    "stop_all",
    "stop_endpoint",
]
