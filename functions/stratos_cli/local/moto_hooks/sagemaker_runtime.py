"""SageMaker Runtime: InvokeEndpoint reaches what the endpoint serves.

moto 5.2.5's InvokeEndpoint answers canned bodies from a queue whatever the endpoint, even one that does not
exist. This hook patches ``moto.sagemakerruntime.responses.SageMakerRuntimeResponse.invoke_endpoint``:

* the endpoint must exist in the embedded SageMaker (``ValidationError`` otherwise, as AWS) and be serving
  (``InService``, or ``Updating`` / ``SystemUpdating``, while the old fleet still serves);
* the request goes to the model of the endpoint's current config: the :class:`SageMakerAccount` is asked first
  (:meth:`~stratos_cli.local.moto_hooks.sagemaker.SageMakerAccount.invoke_endpoint`: a test double answers
  there); when it returns ``None``, a local server (:class:`LocalModelServers`) answers: the model's
  ``ModelDataUrl`` archive is unpacked from the embedded S3 into a temporary folder and served by
  :func:`~stratos_cli.local.serving.registry.start_private_server`, one server per model, started on the first
  request for it and stopped when the hooks are removed (never listed by ``stratos endpoints``, never replacing
  a registered endpoint);
* a container error (HTTP status >= 400) becomes ``ModelError`` (HTTP 424) with ``OriginalStatusCode`` and
  ``OriginalMessage``, as SageMaker reports one.

So the post-deploy latency check measures, locally, the student the run trained, served by the same server as
``stratos invoke`` uses. moto handles each boto3 call in the caller's thread, so concurrent clients stay
concurrent.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch
from stratos_cli.local.moto_hooks.sagemaker import ContainerAnswer, EndpointInvocation, SageMakerAccount

#: Endpoint states in which SageMaker routes invocations (an update keeps the old fleet serving until it flips).
SERVING_STATES = frozenset({"InService", "Updating", "SystemUpdating"})
#: How long a local server may take to answer one invocation, s (InvokeEndpoint's own limit is 60 s; a CPU is slower).
LOCAL_INVOKE_TIMEOUT_S = 600.0


def _error(code: str, message: str, status: int = 400, **extra: Any) -> Exception:
    """A JSON error as SageMaker Runtime sends it (``__type`` and ``message``; ModelError's own members)."""
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status  # the HTTP status (JsonRESTError's default is 400)
    if extra:
        doc = json.loads(error.description)
        doc.update(extra)
        error.description = json.dumps(doc)
    return error


class LocalModelServers:
    """One local server per endpoint model (see the module docstring); :meth:`close` stops them all.

    Args:
        s3: ``s3(bucket, key) -> bytes``: reads a model archive from the embedded S3.
    """

    def __init__(self, s3: Callable[[str, str], bytes]) -> None:
        self._s3 = s3
        self._servers: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._root: Path | None = None

    def _folder(self) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="stratos-endpoints-"))
            return self._root

    def server_for(self, invocation: EndpointInvocation) -> Any:
        """The running :class:`~stratos_cli.local.serving.registry.PrivateServer` of the invocation's model
        (started on first use; several requests for a model that is still starting wait for the one start).

        Raises:
            EndpointStartError: the model would not load (its log tail in the message).
        """
        from stratos.types import split_uri
        from stratos_cli.local.serving import start_private_server

        with self._lock:
            lock = self._locks.setdefault(invocation.model_name, threading.Lock())
        with lock:
            server = self._servers.get(invocation.model_name)
            if server is not None:
                return server
            root = self._folder()
            target = root / "models" / invocation.model_name
            bucket, key = split_uri(invocation.model_data_url)
            with tarfile.open(fileobj=io.BytesIO(self._s3(bucket, key)), mode="r:gz") as archive:
                archive.extractall(target, filter="data")
            server = start_private_server(invocation.model_name[:63].rstrip("-"), target, root / "logs")
            self._servers[invocation.model_name] = server
            return server

    def invoke(self, invocation: EndpointInvocation) -> ContainerAnswer:
        """POST the invocation's body to its model's server; the container's status and body."""
        server = self.server_for(invocation)
        request = urllib.request.Request(
            f"{server.url}/invocations",
            data=invocation.body,
            method="POST",
            headers={"Content-Type": invocation.content_type or "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=LOCAL_INVOKE_TIMEOUT_S) as response:
                return ContainerAnswer(int(response.status), response.read())
        except urllib.error.HTTPError as exc:
            return ContainerAnswer(int(exc.code), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return ContainerAnswer(503, json.dumps({"error": f"the local server does not answer: {exc}"}).encode())

    def close(self) -> None:
        """Stop every server and remove the unpacked models."""
        from stratos_cli.local.serving.processes import terminate
        from stratos_cli.local.serving.registry import DEFAULT_STOP_TIMEOUT_S

        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            root, self._root = self._root, None
        for server in servers:
            terminate(server.pid, DEFAULT_STOP_TIMEOUT_S)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


class SimulatedRuntime:
    """The InvokeEndpoint hook (see the module docstring).

    Args:
        account: asked first how an endpoint answers (:meth:`SageMakerAccount.invoke_endpoint`).
    """

    def __init__(self, account: SageMakerAccount) -> None:
        self.account = account
        self.servers = LocalModelServers(self._read_s3)
        self.invocations: list[EndpointInvocation] = []
        self._lock = threading.Lock()
        self._where: tuple[str, str] = ("", "")

    def _read_s3(self, bucket: str, key: str) -> bytes:
        """An object of the embedded S3 (the account and region of the latest invocation)."""
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        account, region = self._where
        found = s3_backends[account][get_partition(region)].get_object(bucket, key)
        if found is None:
            raise FileNotFoundError(f"s3://{bucket}/{key}: no such model archive in the embedded S3")
        body: bytes = found.value
        return body

    def target(
        self, account_id: str, region: str, endpoint_name: str, body: bytes, content_type: str
    ) -> EndpointInvocation:
        """The :class:`EndpointInvocation` of a request to ``endpoint_name``.

        Raises:
            ValidationError (moto JSON error): no such endpoint, or it is not serving.
        """
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[account_id][region]
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            raise _error("ValidationError", f"Endpoint {endpoint_name} of account {account_id} not found.")
        if endpoint.endpoint_status not in SERVING_STATES:
            raise _error(
                "ValidationError",
                f"Endpoint {endpoint_name} of account {account_id} is {endpoint.endpoint_status}, not in service.",
            )
        config = backend.endpoint_configs[endpoint.endpoint_config_name]
        model_name = str(config.production_variants[0]["ModelName"])
        container = backend._models[model_name].primary_container or {}
        return EndpointInvocation(
            endpoint_name=endpoint_name,
            config_name=str(endpoint.endpoint_config_name),
            model_name=model_name,
            model_data_url=str(container.get("ModelDataUrl", "")),
            body=body,
            content_type=content_type,
        )

    def answer(self, invocation: EndpointInvocation) -> ContainerAnswer:
        """What the endpoint answers: the account's answer, else the local server's."""
        with self._lock:
            self.invocations.append(invocation)
        scripted = self.account.invoke_endpoint(invocation)
        return scripted if scripted is not None else self.servers.invoke(invocation)

    def patches(self) -> list[Patch]:
        """``SageMakerRuntimeResponse.invoke_endpoint``, and stopping the local servers when the hooks go."""
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        hook = self

        def invoke_endpoint(self: Any) -> Any:
            name = str(self._get_params().get("EndpointName") or self.path.split("/")[2])
            body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode("utf-8")
            content_type = str(self.headers.get("Content-Type") or "application/json")
            hook._where = (self.current_account, self.region)
            invocation = hook.target(self.current_account, self.region, name, body, content_type)
            answer = hook.answer(invocation)
            if answer.status >= 400:
                text = answer.body.decode("utf-8", errors="replace")
                raise _error(
                    "ModelError",
                    f'Received client error ({answer.status}) from primary with message "{text[:1024]}". See '
                    f"the local server's log for {invocation.model_name}.",
                    status=424,
                    OriginalStatusCode=answer.status,
                    OriginalMessage=text[:1024],
                )
            headers = {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": "AllTraffic"}
            return 200, headers, answer.body

        return [patch.object(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint), self._closing()]

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.servers.close()
