"""Local endpoints: a SageMaker-hosting-compatible inference server and the registry of running ones.

The local deploy step stands in for a SageMaker endpoint with a process on this machine that speaks the same
hosting contract as a SageMaker inference container (and the Hugging Face LLM / TGI container deployed on
it):

* ``GET /ping`` — 200 once the model is loaded, 503 while it loads (SageMaker's health check);
* ``POST /invocations`` (``Content-Type: application/json``) — ``{"inputs": "prompt" | [messages],
  "parameters": {...}}`` or ``{"messages": [...]}``; answers ``[{"generated_text": "..."}]`` (TGI's shape).

Only ``127.0.0.1`` is bound: the server has no authentication, like the container behind SageMaker's own
front end. One model per process; generation is serialised by a lock (the model is not re-entrant and two
CPU generations in parallel only slow each other down).

The registry is one JSON file per endpoint under ``$STRATOS_HOME/endpoints/`` (``~/.stratos/endpoints/`` by
default) holding ``{name, url, port, pid, model_dir, started_at, status, log_path}``; each server logs to its
own file beside it. :func:`start_endpoint` replaces an endpoint of the same name blue/green (the new server
must answer ``/ping`` before the old one is stopped), as SageMaker's UpdateEndpoint does.

Run one server by hand with ``python -m stratos_cli.local.serving --model-dir DIR --port P --endpoint-name NAME``.

torch and transformers are imported only inside the server process's model loader; the registry functions
import the standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast

from stratos.errors import FieldError, InputValidationError, StratosError

logger = logging.getLogger("stratos_cli.local.serving")

HOST = "127.0.0.1"
"""The only interface the server binds: local use, no authentication."""
HOME_ENV = "STRATOS_HOME"
"""Environment variable overriding the Stratos state directory (default ``~/.stratos``)."""
MAX_BODY_BYTES = 6 * 1024 * 1024
"""Largest request body, bytes: SageMaker real-time InvokeEndpoint's payload limit (6 MB)."""
MAX_NEW_TOKENS_LIMIT = 4096
"""Upper bound on ``parameters.max_new_tokens``, tokens (a CPU guard; the context length also bounds it)."""
DEFAULT_MAX_NEW_TOKENS = 128
"""``max_new_tokens`` when neither the request nor the model's generation_config.json sets one, tokens."""
DEFAULT_START_TIMEOUT_S = 180.0
"""How long :func:`start_endpoint` waits for ``/ping`` = 200, s (a 135M model loads in a few seconds here;
the import of torch and transformers on a busy 2-core machine takes most of it)."""
DEFAULT_STOP_TIMEOUT_S = 15.0
"""How long :func:`stop_endpoint` waits after SIGTERM before SIGKILL, s (an in-flight generation finishes)."""
DEFAULT_INVOKE_TIMEOUT_S = 600.0
"""HTTP timeout of :func:`invoke`, s (long CPU generations)."""
ROLES = ("system", "user", "assistant")
SERVER_MODULE = "stratos_cli.local.serving"
#: SageMaker's endpoint-name rule, reused so a local name is also a valid cloud name (and a safe file name).
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: Parameters accepted under ``parameters`` (a subset of TGI's): name -> what it means.
PARAMETERS: dict[str, str] = {
    "max_new_tokens": "an integer 1..4096: tokens to generate at most",
    "do_sample": "true or false: sample instead of decoding greedily (default: greedy unless temperature > 0)",
    "temperature": "a number >= 0: sampling temperature (0 = greedy)",
    "top_p": "a number in (0, 1]: nucleus-sampling probability mass",
    "top_k": "an integer >= 0: sample among the k likeliest tokens (0 = off)",
    "seed": "an integer >= 0: random seed set before sampling",
    "stop": "a list of non-empty strings: the text is cut before the first one",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_PARAMETER_CHECKS: dict[str, Callable[[Any], bool]] = {
    "max_new_tokens": lambda v: _is_int(v) and 1 <= v <= MAX_NEW_TOKENS_LIMIT,
    "do_sample": lambda v: isinstance(v, bool),
    "temperature": lambda v: _is_number(v) and v >= 0,
    "top_p": lambda v: _is_number(v) and 0 < v <= 1,
    "top_k": lambda v: _is_int(v) and v >= 0,
    "seed": lambda v: _is_int(v) and v >= 0,
    "stop": lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v),
}

EndpointStatus = Literal["InService", "Loading", "NotResponding", "Stale", "Stopped"]


class EndpointNotFoundError(StratosError):
    """No local endpoint of that name is registered (the message lists the known ones)."""


class EndpointUnavailableError(StratosError):
    """The endpoint is registered but its server process is gone or does not answer."""


class EndpointStartError(StratosError):
    """A server did not come up (it exited, or ``/ping`` stayed non-200 until the timeout); the message ends
    with the last lines of its log. An endpoint being replaced keeps serving."""


class InvocationError(StratosError):
    """The server answered an invocation with an error status.

    Attributes:
        status: HTTP status code (400 bad request, 415 wrong content type, 500 generation failed, ...).
        field: the request field the server named (``None`` when not about one field).
    """

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


# --------------------------------------------------------------------------------------------------------------
# Requests


class RequestError(ValueError):
    """An invocation body was rejected; ``field`` is its dotted path (``<body>`` for the body as a whole)."""

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class GenerationRequest:
    """One parsed invocation.

    Attributes:
        messages: the chat turns (a plain prompt string becomes one user message); each ``{"role", "content"}``.
        max_new_tokens: tokens to generate at most (``None`` = the model's generation_config, else 128).
        do_sample: sample (True) or decode greedily (False).
        temperature: sampling temperature (``None`` = library default 1.0); only used when sampling.
        top_p: nucleus-sampling mass, (0, 1]; only used when sampling.
        top_k: top-k cut-off (0 = off); only used when sampling.
        seed: random seed set before sampling (``None`` = unseeded).
        stop: strings that end the text (cut before the first occurrence), in addition to the stop token ids.
    """

    messages: tuple[Mapping[str, str], ...]
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


def _messages(value: Any, field: str) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise RequestError(field, "must be a non-empty list of {role, content} messages")
    out: list[Mapping[str, str]] = []
    for i, message in enumerate(value):
        path = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise RequestError(path, "must be an object with role and content")
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise RequestError(f"{path}.{extra[0]}", "unknown message field (expected role and content)")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{path}.role", f"must be one of {', '.join(ROLES)} (got {role!r})")
        content = message.get("content")
        if not isinstance(content, str):
            raise RequestError(f"{path}.content", "missing or not a string")
        out.append({"role": role, "content": content})
    return tuple(out)


def parse_request(body: bytes) -> GenerationRequest:
    """Parse and check an invocation body (UTF-8 JSON).

    Accepted shapes: ``{"inputs": "prompt text", "parameters": {...}}``, ``{"inputs": [messages],
    "parameters": {...}}`` and ``{"messages": [messages], "parameters": {...}}``; parameters are listed in
    :data:`PARAMETERS`. Decoding is greedy unless ``do_sample`` is true, or ``do_sample`` is absent and
    ``temperature`` > 0 (as in TGI).

    Raises:
        RequestError: naming the first offending field: ``<body>`` (not JSON, not an object), ``inputs``,
            ``messages``, ``messages[i].role`` / ``.content``, ``parameters``, ``parameters.<name>``.
    """
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError("<body>", f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise RequestError("<body>", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(doc, dict):
        raise RequestError("<body>", f"must be a JSON object, got {type(doc).__name__}")
    extra = sorted(set(doc) - {"inputs", "messages", "parameters"})
    if extra:
        raise RequestError(extra[0], "unknown field (expected inputs or messages, and optional parameters)")
    if "inputs" in doc and "messages" in doc:
        raise RequestError("messages", "give inputs or messages, not both")
    if "inputs" in doc:
        inputs = doc["inputs"]
        if isinstance(inputs, str):
            if not inputs.strip():
                raise RequestError("inputs", "empty prompt")
            messages: tuple[Mapping[str, str], ...] = ({"role": "user", "content": inputs},)
        elif isinstance(inputs, list):
            messages = _messages(inputs, "inputs")
        else:
            raise RequestError("inputs", "must be a prompt string or a list of chat messages")
    elif "messages" in doc:
        messages = _messages(doc["messages"], "messages")
    else:
        raise RequestError("inputs", "missing: give inputs (a prompt string or chat messages) or messages")

    params = doc.get("parameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError("parameters", "must be an object")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"parameters.{unknown[0]}", f"unsupported parameter (supported: {', '.join(PARAMETERS)})")

    values: dict[str, Any] = {}
    for name, value in params.items():
        if value is not None and not _PARAMETER_CHECKS[name](value):
            raise RequestError(f"parameters.{name}", f"must be {PARAMETERS[name]} (got {value!r})")
        values[name] = value
    temperature = values.get("temperature")
    do_sample = values.get("do_sample")
    if do_sample is None:
        do_sample = temperature is not None and temperature > 0
    if do_sample and temperature == 0:
        raise RequestError("parameters.temperature", "must be > 0 when do_sample is true")
    return GenerationRequest(
        messages=messages,
        max_new_tokens=values.get("max_new_tokens"),
        do_sample=do_sample,
        temperature=float(temperature) if temperature is not None else None,
        top_p=float(values["top_p"]) if values.get("top_p") is not None else None,
        top_k=values.get("top_k"),
        seed=values.get("seed"),
        stop=tuple(values.get("stop") or ()),
    )


# --------------------------------------------------------------------------------------------------------------
# The model


class ServingModel:
    """A causal LM loaded from a deployed model directory (config, weights, tokenizer, generation config at
    the root, as :func:`stratos_train.export.save_deployable` writes it).

    Weights are loaded as float32 (bf16 on disk is upcast: CPU inference). Stop ids are every id in
    ``generation_config.eos_token_id`` (a list), falling back to the tokenizer's EOS.

    Attributes:
        model_dir: the directory.
        model, tokenizer: the transformers objects.
        stop_ids: token ids that end a completion.
        context_tokens: the model's maximum sequence length (prompt + completion), tokens.
        default_max_new_tokens: from generation_config.json, else :data:`DEFAULT_MAX_NEW_TOKENS`.
    """

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        """Load the model.

        Args:
            model_dir: a deployed model directory.
            threads: torch intra-op threads (0 = torch's default).

        Raises:
            OSError, ValueError: transformers could not load the directory.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        # cast: transformers' stubs type eval() as untyped; the model is an opaque transformers object here.
        self.model: Any = cast(Any, AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
        self.model.eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not ids and self.tokenizer.eos_token_id is not None:
            ids = [self.tokenizer.eos_token_id]
        self.stop_ids: list[int] = sorted(set(ids))
        self.pad_id: int = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.context_tokens: int = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.default_max_new_tokens: int = int(gen.max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self._lock = threading.Lock()

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text: the tokenizer's chat template with the assistant turn opened; without a template,
        the message contents one per line.

        Raises:
            RequestError: (``messages``) the chat template rejected the turns (e.g. roles not alternating).
        """
        if not getattr(self.tokenizer, "chat_template", None):
            return "\n".join(m["content"] for m in messages) + "\n"
        try:
            text: str = self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja2 TemplateError or a template's own raise_exception
            raise RequestError("messages", f"the model's chat template rejected them: {exc}") from exc
        return text

    def generate(self, request: GenerationRequest) -> str:
        """The completion text (special tokens skipped; cut at the first stop id and the first stop string).

        Raises:
            RequestError: (``inputs``) prompt + ``max_new_tokens`` exceed the model's context.
        """
        import torch

        prompt = self.render(request.messages)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        max_new = request.max_new_tokens or self.default_max_new_tokens
        if self.context_tokens and len(ids) + max_new > self.context_tokens:
            raise RequestError(
                "inputs",
                f"prompt is {len(ids)} tokens; with max_new_tokens {max_new} it exceeds the model's context of "
                f"{self.context_tokens} tokens",
            )
        options: dict[str, Any] = {"do_sample": request.do_sample}
        if request.do_sample:
            for name in ("temperature", "top_p", "top_k"):
                if getattr(request, name) is not None:
                    options[name] = getattr(request, name)
        input_ids = torch.tensor([ids], dtype=torch.long)
        with self._lock, torch.no_grad():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new,
                eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id,
                **options,
            )
        new = out[0, len(ids) :].tolist()
        cut = next((k for k, t in enumerate(new) if t in self.stop_ids), len(new))
        text: str = self.tokenizer.decode(new[:cut], skip_special_tokens=True)
        for marker in request.stop:
            position = text.find(marker)
            if position >= 0:
                text = text[:position]
        return text


# --------------------------------------------------------------------------------------------------------------
# The HTTP server


class InferenceServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving one :class:`ServingModel` under the SageMaker hosting contract.

    ``model`` is ``None`` until :meth:`load` finishes (``/ping`` answers 503 meanwhile); ``load_error`` holds
    the reason a load failed. Request threads are joined on close, so SIGTERM lets an in-flight generation
    finish.
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, port: int, endpoint_name: str, model_dir: Path, threads: int = 0) -> None:
        super().__init__((HOST, port), _Handler)
        self.endpoint_name = endpoint_name
        self.model_dir = model_dir
        self.threads = threads
        self.model: ServingModel | None = None
        self.load_error: str | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        return int(self.server_address[1])

    def load(self) -> None:
        """Load the model (in a background thread while the server already answers 503 to ``/ping``)."""
        started = time.perf_counter()
        try:
            self.model = ServingModel(self.model_dir, self.threads)
        except Exception as exc:  # any load failure ends the process with the reason in its log
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.exception("endpoint %s: cannot load %s", self.endpoint_name, self.model_dir)
            threading.Thread(target=self.shutdown, daemon=True).start()
            return
        logger.info(
            "endpoint %s: loaded %s in %.1f s (stop ids %s, context %d tokens); serving on http://%s:%d",
            self.endpoint_name,
            self.model_dir,
            time.perf_counter() - started,
            self.model.stop_ids,
            self.model.context_tokens,
            HOST,
            self.port,
        )


class _Handler(BaseHTTPRequestHandler):
    server: InferenceServer
    server_version = "StratosLocalEndpoint/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        doc: dict[str, Any] = {"error": message}
        if field is not None:
            doc["field"] = field
        self._send(status, doc)

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._error(404 if self.path != "/invocations" else 405, f"GET {self.path}: not found (GET /ping)")
            return
        if self.server.model is None:
            self._send(503, {"status": "loading" if self.server.load_error is None else "failed"})
            return
        self._send(200, {"status": "ready", "endpoint": self.server.endpoint_name})

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._error(404, f"POST {self.path}: not found (POST /invocations)")
            return
        model = self.server.model
        if model is None:
            self._error(503, "model is still loading")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._error(415, f"Content-Type must be application/json (got {content_type or 'none'!r})")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._error(411, "Content-Length required")
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._error(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES} (SageMaker's 6 MB)")
            return
        try:
            request = parse_request(self.rfile.read(length))
            started = time.perf_counter()
            text = model.generate(request)
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.field)
            return
        except Exception as exc:  # a bug or resource failure: reason to the client, traceback to the log
            logger.exception("endpoint %s: generation failed", self.server.endpoint_name)
            self._error(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        logger.info("generated %d characters in %.2f s", len(text), time.perf_counter() - started)
        self._send(200, [{"generated_text": text}])


def serve(model_dir: Path, port: int, endpoint_name: str, *, port_file: Path | None = None, threads: int = 0) -> int:
    """Run the server until SIGTERM/SIGINT; the model loads in the background after the port is bound.

    Args:
        model_dir: deployed model directory.
        port: TCP port on 127.0.0.1 (0 = any free port; see ``port_file``).
        endpoint_name: the endpoint's name (logs and ``/ping``).
        port_file: when given, the bound port is written here (atomically) once listening.
        threads: torch intra-op threads (0 = torch's default).

    Returns:
        0 after a clean stop, 1 when the model could not be loaded.
    """
    server = InferenceServer(port, endpoint_name, model_dir, threads)
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(server.port), encoding="utf-8")
        tmp.replace(port_file)

    def stop(signum: int, _frame: Any) -> None:
        logger.info("endpoint %s: signal %d, stopping after in-flight requests", endpoint_name, signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.load, name="load-model", daemon=True).start()
    logger.info("endpoint %s: listening on http://%s:%d, loading %s", endpoint_name, HOST, server.port, model_dir)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    logger.info("endpoint %s: stopped", endpoint_name)
    return 1 if server.load_error else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stratos_cli.local.serving``: one endpoint server in the foreground (logs to stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m stratos_cli.local.serving", description="Serve a deployed model dir on 127.0.0.1."
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="deployed model directory")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free one; default 8080)")
    parser.add_argument("--endpoint-name", default="local", help="endpoint name for logs and /ping")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.model_dir, args.port, args.endpoint_name, port_file=args.port_file, threads=args.threads)


# --------------------------------------------------------------------------------------------------------------
# The registry of running endpoints


@dataclass(frozen=True)
class EndpointInfo:
    """One registered local endpoint.

    Attributes:
        name: endpoint name (SageMaker's rule: alphanumerics and hyphens, at most 63 characters).
        url: base URL, ``http://127.0.0.1:<port>`` (append ``/ping`` or ``/invocations``).
        port: TCP port on 127.0.0.1.
        pid: server process id.
        model_dir: absolute path of the served model directory.
        started_at: when the server answered its first ``/ping``, ISO 8601 UTC.
        status: ``InService`` (answers ``/ping`` 200), ``Loading`` (503), ``NotResponding`` (process alive,
            no answer), ``Stale`` (process gone; the entry is left for ``stratos endpoints --stop``),
            ``Stopped`` (returned by :func:`stop_endpoint`).
        log_path: the server's log file.
    """

    name: str
    url: str
    port: int
    pid: int
    model_dir: str
    started_at: str
    status: EndpointStatus
    log_path: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the registry file's content)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EndpointInfo:
        """Read a registry entry.

        Raises:
            KeyError, TypeError, ValueError: the entry is malformed.
        """
        return cls(
            name=str(doc["name"]),
            url=str(doc["url"]),
            port=int(doc["port"]),
            pid=int(doc["pid"]),
            model_dir=str(doc["model_dir"]),
            started_at=str(doc["started_at"]),
            status=doc.get("status", "InService"),
            log_path=str(doc.get("log_path", "")),
        )


#: Server processes this interpreter started, kept so they are reaped (no zombies) and waited on stop.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def state_dir() -> Path:
    """The endpoint registry directory: ``$STRATOS_HOME/endpoints`` (``~/.stratos/endpoints`` by default)."""
    home = os.environ.get(HOME_ENV)
    return (Path(home).expanduser() if home else Path.home() / ".stratos") / "endpoints"


def _entry_path(name: str) -> Path:
    return state_dir() / f"{name}.json"


def _check_name(name: str) -> None:
    if not ENDPOINT_NAME_RE.match(name):
        raise InputValidationError(
            [FieldError("endpoint_name", name[:80], "1-63 letters, digits and hyphens, not starting with a hyphen")],
            source="local endpoint",
        )


def _check_model_dir(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()} if model_dir.is_dir() else set()
    missing = [f for f in ("config.json", "generation_config.json", "tokenizer_config.json") if f not in names]
    if not names & {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"}:
        missing.append("model.safetensors")
    if not names & {"tokenizer.json", "tokenizer.model", "vocab.json"}:
        missing.append("tokenizer.json")
    if missing:
        raise InputValidationError(
            [FieldError("model_dir", str(model_dir)[-80:], f"lacks {', '.join(missing)} at its root")],
            source="local endpoint",
        )


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """Exclusive lock over registry writes (two starts of one name must not both keep their server)."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_entry(info: EndpointInfo) -> None:
    path = _entry_path(info.name)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info.as_dict(), indent=2), encoding="utf-8")
    tmp.replace(path)


def _read_entry(name: str) -> EndpointInfo | None:
    path = _entry_path(name)
    try:
        return EndpointInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable endpoint entry %s: %s", path, exc)
        return None


def _reap(pid: int, *, exited: bool = False) -> None:
    """Collect the exit status of a server this interpreter started, so it does not linger as a zombie.

    ``exited``: the process is known to have exited (a zombie): wait for the status even if another thread
    is polling it at the same moment (``Popen.poll`` gives up instead of waiting in that case).
    """
    child = _CHILDREN.get(pid)
    if child is not None:
        if exited:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5.0)
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) endpoint server process.

    On Linux the command line is checked too, so a recycled pid of another program does not count.
    """
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's: not ours, but alive
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                _reap(pid, exited=True)  # it exited after the first reap: collect it now if it is ours
                return False
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
            # An exiting process reads as an empty command line until it is a zombie: still alive.
            return not cmdline or SERVER_MODULE in cmdline
        except OSError:
            return False
    return True


def _ping(url: str, timeout_s: float) -> int | None:
    """HTTP status of ``GET url/ping`` (``None`` when nothing answers)."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns once the process is gone."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    logger.warning("endpoint server pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _python_path() -> str:
    """PYTHONPATH for the server: the folders holding ``stratos_cli`` and the ``stratos`` core first (source
    checkouts)."""
    functions = Path(__file__).resolve().parents[2]
    roots = [str(functions), str(functions / "lambda")]
    current = os.environ.get("PYTHONPATH")
    return os.pathsep.join(roots + ([current] if current else []))


def start_endpoint(
    name: str,
    model_dir: str | os.PathLike[str],
    port: int | None = None,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    threads: int = 0,
) -> EndpointInfo:
    """Start a server for ``model_dir`` as endpoint ``name`` and wait until it answers ``/ping`` with 200.

    The server runs detached (own session; survives this process) and logs to
    ``<state dir>/<name>-<UTC time>.log``. If an endpoint of that name exists, it is replaced blue/green:
    the new server starts on another port and must be in service before the old one is stopped and the
    registry entry switched; if the new one fails, the old one keeps serving.

    Args:
        name: endpoint name (SageMaker's rule: 1-63 letters, digits, hyphens).
        model_dir: a deployed model directory (config, weights, tokenizer, generation config at its root).
        port: TCP port on 127.0.0.1; ``None`` = a free port chosen by the server when it binds. A given port
            must be free: a replacement runs beside the server it replaces, so it cannot reuse that one's port.
        timeout_s: how long to wait for ``/ping`` = 200, s.
        threads: torch threads of the server (0 = torch's default).

    Returns:
        The registered endpoint (status ``InService``).

    Raises:
        InputValidationError: ``endpoint_name`` or ``model_dir`` is unusable (the field says which and why).
        EndpointStartError: the server exited or did not answer in time (its log tail in the message).
    """
    _check_name(name)
    directory = Path(model_dir).expanduser().resolve()
    _check_model_dir(directory)
    registry = state_dir()
    registry.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log_path = registry / f"{name}-{stamp}.log"
    port_file = registry / f".{name}-{stamp}.port"
    command = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model-dir",
        str(directory),
        "--port",
        str(port or 0),
        "--endpoint-name",
        name,
        "--port-file",
        str(port_file),
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "PYTHONPATH": _python_path(), "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    try:
        bound = _wait_ready(process, port_file, log_path, name, timeout_s)
    except BaseException:
        _terminate(process.pid, DEFAULT_STOP_TIMEOUT_S)
        raise
    finally:
        port_file.unlink(missing_ok=True)
    info = EndpointInfo(
        name=name,
        url=f"http://{HOST}:{bound}",
        port=bound,
        pid=process.pid,
        model_dir=str(directory),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="InService",
        log_path=str(log_path),
    )
    with _registry_lock():
        old = _read_entry(name)
        _write_entry(info)
    if old is not None and old.pid != info.pid:
        _terminate(old.pid, DEFAULT_STOP_TIMEOUT_S)
        logger.info("endpoint %s: replaced pid %d (%s) by pid %d (%s)", name, old.pid, old.url, info.pid, info.url)
    return info


def _wait_ready(process: subprocess.Popen[bytes], port_file: Path, log_path: Path, name: str, timeout_s: float) -> int:
    """Poll until the server's port is known and ``/ping`` answers 200; return the port."""
    deadline = time.monotonic() + timeout_s
    bound: int | None = None
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise EndpointStartError(
                f"endpoint {name}: server exited with code {code} while starting; log {log_path}:\n"
                f"{_log_tail(log_path)}"
            )
        if bound is None and port_file.exists():
            with contextlib.suppress(ValueError, OSError):
                bound = int(port_file.read_text(encoding="utf-8"))
        if bound is not None and _ping(f"http://{HOST}:{bound}", timeout_s=2.0) == 200:
            return bound
        time.sleep(0.2)
    raise EndpointStartError(
        f"endpoint {name}: no /ping 200 within {timeout_s:.0f} s; log {log_path}:\n{_log_tail(log_path)}"
    )


def list_endpoints(*, ping: bool = True) -> list[EndpointInfo]:
    """Every registered endpoint, by name, with its current status.

    Entries whose process is gone are marked ``Stale`` (also on disk) and kept until stopped.

    Args:
        ping: ask each live server ``/ping`` (1 s timeout) to tell InService / Loading / NotResponding.
    """
    directory = state_dir()
    if not directory.is_dir():
        return []
    out: list[EndpointInfo] = []
    for path in sorted(directory.glob("*.json")):
        info = _read_entry(path.stem)
        if info is None:
            continue
        status: EndpointStatus
        if not pid_alive(info.pid):
            status = "Stale"
        elif not ping:
            status = "InService"
        else:
            code = _ping(info.url, timeout_s=1.0)
            status = "InService" if code == 200 else "Loading" if code == 503 else "NotResponding"
        if status != info.status:
            info = replace(info, status=status)
            if status == "Stale":
                with _registry_lock():
                    _write_entry(info)
        out.append(info)
    return out


def get_endpoint(name: str) -> EndpointInfo:
    """The registry entry of ``name`` (status as stored).

    Raises:
        EndpointNotFoundError: no such endpoint (the known names in the message).
    """
    info = _read_entry(name) if ENDPOINT_NAME_RE.match(name) else None
    if info is None:
        known = sorted(p.stem for p in state_dir().glob("*.json")) if state_dir().is_dir() else []
        raise EndpointNotFoundError(
            f"no local endpoint named {name!r} (known: {', '.join(known) or 'none'}; registry {state_dir()})"
        )
    return info


def stop_endpoint(name: str, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> EndpointInfo:
    """Stop endpoint ``name`` (SIGTERM, then SIGKILL after ``timeout_s`` s) and remove its registry entry.

    Returns:
        The entry as it was, with status ``Stopped``. Its log file is kept.

    Raises:
        EndpointNotFoundError: no such endpoint.
    """
    info = get_endpoint(name)
    _terminate(info.pid, timeout_s)
    with _registry_lock():
        current = _read_entry(name)
        if current is not None and current.pid == info.pid:
            _entry_path(name).unlink(missing_ok=True)
    return replace(info, status="Stopped")


def stop_all(*, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> list[EndpointInfo]:
    """Stop every registered endpoint (stale ones are just removed); returns them with status ``Stopped``."""
    return [stop_endpoint(info.name, timeout_s=timeout_s) for info in list_endpoints(ping=False)]


def _post(info: EndpointInfo, body: bytes, timeout_s: float) -> Any:
    """POST ``body`` to the endpoint's ``/invocations``; the decoded JSON answer.

    Raises:
        InvocationError: the server answered with an error status.
        urllib.error.URLError, OSError: nothing answered (connection refused, reset, timeout).
    """
    request = urllib.request.Request(
        f"{info.url}/invocations", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read().decode("utf-8"))
        except (ValueError, OSError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        message = error.get("error") or exc.reason
        raise InvocationError(
            f"endpoint {info.name}: HTTP {exc.code}: {message}", exc.code, error.get("field")
        ) from exc


def invoke(
    name: str, payload: Mapping[str, Any] | str, *, timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S
) -> list[dict[str, Any]]:
    """``POST /invocations`` to endpoint ``name``.

    Args:
        name: endpoint name.
        payload: the JSON body (``{"inputs": ..., "parameters": ...}``), or a prompt string (sent as
            ``{"inputs": prompt}``).
        timeout_s: HTTP timeout, s.

    Returns:
        The server's answer, TGI's shape: ``[{"generated_text": "..."}]``.

    Raises:
        EndpointNotFoundError: no such endpoint.
        EndpointUnavailableError: the server process is gone or does not answer.
        InvocationError: the server rejected the request (status, message and field from its JSON error).
    """
    info = get_endpoint(name)
    if not pid_alive(info.pid):
        raise EndpointUnavailableError(
            f"endpoint {name}: server pid {info.pid} is not running (see {info.log_path}); "
            f"restart it or remove it with `stratos endpoints --stop {name}`"
        )
    body = json.dumps({"inputs": payload} if isinstance(payload, str) else dict(payload)).encode("utf-8")
    try:
        answer = _post(info, body, timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        # Blue/green: the entry may have switched to a new server (and the old one stopped) between reading the
        # registry and connecting. Retry once against the current entry before calling it down.
        current = _read_entry(name)
        if current is None or current.url == info.url or not pid_alive(current.pid):
            raise EndpointUnavailableError(f"endpoint {name} at {info.url} does not answer: {exc}") from exc
        try:
            answer = _post(current, body, timeout_s)
        except (urllib.error.URLError, OSError) as again:
            raise EndpointUnavailableError(f"endpoint {name} at {current.url} does not answer: {again}") from again
    if not isinstance(answer, list) or not all(isinstance(a, dict) and "generated_text" in a for a in answer):
        raise InvocationError(f"endpoint {name}: unexpected answer shape {str(answer)[:200]}", 200)
    return answer


if __name__ == "__main__":
    sys.exit(main())
