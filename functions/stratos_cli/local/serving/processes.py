"""Endpoint server processes: spawn one detached, tell whether a pid is still one of ours, stop it.

Liveness and signalling go through psutil, whose :class:`psutil.Process` remembers the process's creation
time, so a pid the kernel has recycled for another program is neither reported alive nor signalled.
Servers this interpreter started are also kept as :class:`subprocess.Popen` objects and reaped, so none
lingers as a zombie.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # psutil ships no type information (no py.typed)

from stratos_cli.local.serving.server import ServerLimits

logger = logging.getLogger(__name__)

SERVER_MODULE = "stratos_cli.local.serving"
"""What :func:`spawn_server` runs with ``python -m`` (the package's ``__main__``); also how :func:`pid_alive`
recognises a server by its command line."""

#: Server processes this interpreter started, kept so they are reaped (no zombies) and waited on stop.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn_server(
    *,
    model_dir: Path,
    port: int,
    endpoint_name: str,
    port_file: Path,
    threads: int,
    log_path: Path,
    limits: ServerLimits | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m stratos_cli.local.serving`` detached (own session: it survives this process).

    Args:
        model_dir: the deployed model directory to serve.
        port: TCP port on 127.0.0.1 (0 = any free one; the server writes the bound port to ``port_file``).
        endpoint_name: the endpoint's name (the server's logs and ``/ping``).
        port_file: where the server writes its bound port once listening.
        threads: torch threads of the server (0 = torch's default).
        log_path: the server's stdout and stderr are appended here.
        limits: the server's load limits (``None`` = :class:`ServerLimits` defaults).

    Returns:
        The process (also kept for reaping).
    """
    command = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
        "--endpoint-name",
        endpoint_name,
        "--port-file",
        str(port_file),
        "--threads",
        str(threads),
        *(limits.as_args() if limits is not None else []),
    ]
    env = {**os.environ, "PYTHONPATH": _python_path(), "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    return process


def _python_path() -> str:
    """PYTHONPATH for the server: the folders holding ``stratos_cli`` and the ``stratos`` core first (source
    checkouts)."""
    functions = Path(__file__).resolve().parents[3]
    roots = [str(functions), str(functions / "lambda")]
    current = os.environ.get("PYTHONPATH")
    return os.pathsep.join(roots + ([current] if current else []))


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

    Its command line must name :data:`SERVER_MODULE`, so a recycled pid of another program does not count;
    a process whose command line cannot be read (another user's) does not count either.
    """
    if pid <= 0:
        return False
    _reap(pid)
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            _reap(pid, exited=True)  # it exited after the first reap: collect it now if it is ours
            return False
        cmdline: list[str] = process.cmdline()
    except psutil.ZombieProcess:
        _reap(pid, exited=True)
        return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    # An exiting process reads as an empty command line until it is a zombie: still alive.
    return not cmdline or any(SERVER_MODULE in part for part in cmdline)


def terminate(pid: int, timeout_s: float) -> None:
    """Stop server ``pid``: SIGTERM, wait up to ``timeout_s`` s (an in-flight generation finishes), then
    SIGKILL; returns once the process is gone (and reaped, if this interpreter started it).

    A pid that is not a live endpoint server (see :func:`pid_alive`) is left alone.
    """
    if not pid_alive(pid):
        return
    try:
        process = psutil.Process(pid)
        process.terminate()
        # Poll rather than psutil's wait(): a server started by another, still running, interpreter stays a
        # zombie until that one reaps it, and wait() counts a zombie as running.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
        logger.warning("endpoint server pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
        process.kill()
    except psutil.NoSuchProcess:
        pass
    while pid_alive(pid):
        time.sleep(0.05)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a server's log (``(no log)`` when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
