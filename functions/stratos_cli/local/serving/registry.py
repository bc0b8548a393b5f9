"""The registry of local endpoints: one JSON file per endpoint, and starting, listing and stopping them.

The registry is one JSON file per endpoint under ``$STRATOS_HOME/endpoints/`` (``~/.stratos/endpoints/`` by
default) holding :class:`EndpointInfo` (``{name, url, port, pid, model_dir, started_at, status, log_path}``);
each server logs to its own file beside it. :func:`start_endpoint` replaces an endpoint of the same name
blue/green (the new server must answer ``/ping`` before the old one is stopped), as SageMaker's UpdateEndpoint
does. Writes hold an exclusive ``flock`` on ``.lock`` in that directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from stratos.errors import FieldError, InputValidationError, StratosError
from stratos_cli.local.serving.processes import log_tail, pid_alive, spawn_server, terminate
from stratos_cli.local.serving.server import HOST, ServerLimits

logger = logging.getLogger(__name__)

HOME_ENV = "STRATOS_HOME"
"""Environment variable overriding the Stratos state directory (default ``~/.stratos``)."""
DEFAULT_START_TIMEOUT_S = 180.0
"""How long :func:`start_endpoint` waits for ``/ping`` = 200, s (a 135M model loads in a few seconds here;
the import of torch and transformers on a busy 2-core machine takes most of it)."""
DEFAULT_STOP_TIMEOUT_S = 15.0
"""How long :func:`stop_endpoint` waits after SIGTERM before SIGKILL, s (an in-flight generation finishes)."""
#: SageMaker's endpoint-name rule, reused so a local name is also a valid cloud name (and a safe file name).
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

EndpointStatus = Literal["InService", "Loading", "NotResponding", "Stale", "Stopped"]


class EndpointNotFoundError(StratosError):
    """No local endpoint of that name is registered (the message lists the known ones)."""


class EndpointUnavailableError(StratosError):
    """The endpoint is registered but its server process is gone or does not answer."""


class EndpointStartError(StratosError):
    """A server did not come up (it exited, or ``/ping`` stayed non-200 until the timeout); the message ends
    with the last lines of its log. An endpoint being replaced keeps serving."""


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


def read_entry(name: str) -> EndpointInfo | None:
    """The registry entry of ``name`` as stored (``None`` when absent or unreadable; the latter is logged)."""
    path = _entry_path(name)
    try:
        return EndpointInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable endpoint entry %s: %s", path, exc)
        return None


def _ping(url: str, timeout_s: float) -> int | None:
    """HTTP status of ``GET url/ping`` (``None`` when nothing answers)."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _spawn_ready(
    name: str,
    model: Path,
    directory: Path,
    port: int,
    timeout_s: float,
    threads: int,
    limits: ServerLimits | None,
) -> tuple[int, int, Path]:
    """Spawn a server for ``model`` logging under ``directory`` and wait until ``/ping`` answers 200; the server is
    stopped again when it does not. Returns ``(pid, bound port, log path)``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log_path = directory / f"{name}-{stamp}.log"
    port_file = directory / f".{name}-{stamp}.port"
    process = spawn_server(
        model_dir=model,
        port=port,
        endpoint_name=name,
        port_file=port_file,
        threads=threads,
        log_path=log_path,
        limits=limits,
    )
    try:
        bound = _wait_ready(process, port_file, log_path, name, timeout_s)
    except BaseException:
        terminate(process.pid, DEFAULT_STOP_TIMEOUT_S)
        raise
    finally:
        port_file.unlink(missing_ok=True)
    return process.pid, bound, log_path


def start_endpoint(
    name: str,
    model_dir: str | os.PathLike[str],
    port: int | None = None,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    threads: int = 0,
    limits: ServerLimits | None = None,
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
        limits: the server's load limits: workers, queue, connections, request timeout (``None`` = defaults).

    Returns:
        The registered endpoint (status ``InService``).

    Raises:
        InputValidationError: ``endpoint_name`` or ``model_dir`` is unusable (the field says which and why).
        EndpointStartError: the server exited or did not answer in time (its log tail in the message).
    """
    _check_name(name)
    directory = Path(model_dir).expanduser().resolve()
    _check_model_dir(directory)
    pid, bound, log_path = _spawn_ready(name, directory, state_dir(), port or 0, timeout_s, threads, limits)
    info = EndpointInfo(
        name=name,
        url=f"http://{HOST}:{bound}",
        port=bound,
        pid=pid,
        model_dir=str(directory),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="InService",
        log_path=str(log_path),
    )
    with _registry_lock():
        old = read_entry(name)
        _write_entry(info)
    if old is not None and old.pid != info.pid:
        terminate(old.pid, DEFAULT_STOP_TIMEOUT_S)
        logger.info("endpoint %s: replaced pid %d (%s) by pid %d (%s)", name, old.pid, old.url, info.pid, info.url)
    return info


@dataclass(frozen=True)
class PrivateServer:
    """A server started outside the registry (:func:`start_private_server`).

    Attributes:
        name: what it calls itself in its log and ``/ping``.
        url: base URL, ``http://127.0.0.1:<port>``.
        pid: server process id (stop it with :func:`~stratos_cli.local.serving.processes.terminate`).
        model_dir: the served model directory.
        log_path: the server's log file.
    """

    name: str
    url: str
    pid: int
    model_dir: str
    log_path: str


def start_private_server(
    name: str,
    model_dir: str | os.PathLike[str],
    directory: Path,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    threads: int = 0,
    limits: ServerLimits | None = None,
) -> PrivateServer:
    """Start a server for ``model_dir`` that is not registered: ``stratos endpoints`` does not list it and it never
    replaces a registered endpoint. The embedded AWS serves its endpoints this way while a run tests them (the
    endpoint a user queries is started by ``stratos run`` once the run has succeeded).

    Args:
        name: the server's name in its log and ``/ping`` (SageMaker's endpoint-name rule).
        model_dir: a deployed model directory.
        directory: where its log (``<name>-<UTC time>.log``) and port file go.
        timeout_s, threads, limits: as :func:`start_endpoint`.

    Raises:
        InputValidationError: ``name`` or ``model_dir`` is unusable.
        EndpointStartError: the server exited or did not answer ``/ping`` 200 in time (its log tail in the message).
    """
    _check_name(name)
    model = Path(model_dir).expanduser().resolve()
    _check_model_dir(model)
    pid, bound, log_path = _spawn_ready(name, model, directory, 0, timeout_s, threads, limits)
    return PrivateServer(name, f"http://{HOST}:{bound}", pid, str(model), str(log_path))


def _wait_ready(process: subprocess.Popen[bytes], port_file: Path, log_path: Path, name: str, timeout_s: float) -> int:
    """Poll until the server's port is known and ``/ping`` answers 200; return the port."""
    deadline = time.monotonic() + timeout_s
    bound: int | None = None
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise EndpointStartError(
                f"endpoint {name}: server exited with code {code} while starting; log {log_path}:\n{log_tail(log_path)}"
            )
        if bound is None and port_file.exists():
            with contextlib.suppress(ValueError, OSError):
                bound = int(port_file.read_text(encoding="utf-8"))
        if bound is not None and _ping(f"http://{HOST}:{bound}", timeout_s=2.0) == 200:
            return bound
        time.sleep(0.2)
    raise EndpointStartError(
        f"endpoint {name}: no /ping 200 within {timeout_s:.0f} s; log {log_path}:\n{log_tail(log_path)}"
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
        info = read_entry(path.stem)
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
    info = read_entry(name) if ENDPOINT_NAME_RE.match(name) else None
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
    terminate(info.pid, timeout_s)
    with _registry_lock():
        current = read_entry(name)
        if current is not None and current.pid == info.pid:
            _entry_path(name).unlink(missing_ok=True)
    return replace(info, status="Stopped")


def stop_all(*, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> list[EndpointInfo]:
    """Stop every registered endpoint (stale ones are just removed); returns them with status ``Stopped``."""
    return [stop_endpoint(info.name, timeout_s=timeout_s) for info in list_endpoints(ping=False)]
