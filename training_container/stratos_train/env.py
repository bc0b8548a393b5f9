"""The SageMaker training-job contract: every path derives from one base directory.

On SageMaker the base is ``/opt/ml``; locally (tests, the embedded pipeline) it is any directory laid out the
same way. The layout (SageMaker developer guide, "How Amazon SageMaker Provides Training Information"):

=====================================  =========================================================
``input/config/hyperparameters.json``  hyperparameters, every value a STRING
``input/config/resourceconfig.json``   hosts of the job: ``current_host``, ``hosts``, ``network_interface_name``
``input/data/<channel>/``              one folder per input channel (overridden by ``SM_CHANNEL_<NAME>``)
``model/``                             what is packed into ``model.tar.gz`` (``SM_MODEL_DIR``)
``output/data/``                       extra outputs, packed into ``output.tar.gz`` (``SM_OUTPUT_DATA_DIR``)
``output/failure``                     the FailureReason SageMaker shows when the job fails
``checkpoints/``                       synced to S3 when checkpointing is configured
=====================================  =========================================================

The hosts come from ``SM_HOSTS`` (a JSON list) and ``SM_CURRENT_HOST`` when set (the SageMaker training toolkit
and local runs set them), else from ``resourceconfig.json`` (SageMaker always writes it), else one local host.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE = "/opt/ml"
#: Environment variable that moves the base directory (tests, local runs).
BASE_ENV = "STRATOS_SM_BASE"
#: SageMaker truncates FailureReason to 1024 characters.
FAILURE_REASON_MAX = 1024
#: The host name of a job with no SageMaker cluster facts (a local run).
LOCAL_HOST = "localhost"


@dataclass(frozen=True)
class Cluster:
    """The hosts of one training job, in SageMaker's order (``algo-1``, ``algo-2``, ...).

    Attributes:
        hosts: every host of the job; the first one hosts the rendezvous.
        current_host: this container's host, one of ``hosts``.
        network_interface: the interface the hosts reach each other on (``eth0`` on SageMaker), or ``None``.
    """

    hosts: tuple[str, ...]
    current_host: str
    network_interface: str | None = None

    def __post_init__(self) -> None:
        if not self.hosts or self.current_host not in self.hosts or len(set(self.hosts)) != len(self.hosts):
            raise ValueError(f"current host {self.current_host!r} must be one of the distinct hosts {list(self.hosts)}")

    @property
    def nodes(self) -> int:
        return len(self.hosts)

    @property
    def node_rank(self) -> int:
        """This host's index in ``hosts`` (torchrun's ``--node_rank``)."""
        return self.hosts.index(self.current_host)

    @property
    def master_addr(self) -> str:
        """The host that runs the rendezvous: the first one."""
        return self.hosts[0]


@dataclass(frozen=True)
class SageMakerEnv:
    """Paths and cluster facts of one training job.

    Attributes:
        base: the ``/opt/ml``-shaped root.
        channel_overrides: ``SM_CHANNEL_<NAME>`` values, channel name lowercased.
        model_dir_override, output_data_override: ``SM_MODEL_DIR`` / ``SM_OUTPUT_DATA_DIR`` when set.
        num_gpus: ``SM_NUM_GPUS`` (0 on CPU instances and locally).
        hosts_override, current_host_override: ``SM_HOSTS`` (a JSON list, as given) / ``SM_CURRENT_HOST`` when set.
    """

    base: Path
    channel_overrides: dict[str, Path] = field(default_factory=dict)
    model_dir_override: Path | None = None
    output_data_override: Path | None = None
    checkpoint_override: Path | None = None
    num_gpus: int = 0
    hosts_override: str | None = None
    current_host_override: str | None = None

    @classmethod
    def from_environ(
        cls, base: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
    ) -> SageMakerEnv:
        """Read the contract from the environment (``os.environ`` by default)."""
        env = dict(os.environ if environ is None else environ)
        root = Path(base or env.get(BASE_ENV) or DEFAULT_BASE)
        channels = {
            key.removeprefix("SM_CHANNEL_").lower(): Path(value)
            for key, value in env.items()
            if key.startswith("SM_CHANNEL_") and value
        }
        return cls(
            base=root,
            channel_overrides=channels,
            model_dir_override=Path(env["SM_MODEL_DIR"]) if env.get("SM_MODEL_DIR") else None,
            output_data_override=Path(env["SM_OUTPUT_DATA_DIR"]) if env.get("SM_OUTPUT_DATA_DIR") else None,
            checkpoint_override=Path(env["STRATOS_CHECKPOINT_DIR"]) if env.get("STRATOS_CHECKPOINT_DIR") else None,
            num_gpus=int(env.get("SM_NUM_GPUS", "0") or 0),
            hosts_override=env.get("SM_HOSTS") or None,
            current_host_override=env.get("SM_CURRENT_HOST") or None,
        )

    @property
    def hyperparameters_path(self) -> Path:
        return self.base / "input" / "config" / "hyperparameters.json"

    @property
    def resource_config_path(self) -> Path:
        return self.base / "input" / "config" / "resourceconfig.json"

    @property
    def model_dir(self) -> Path:
        return self.model_dir_override or self.base / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.output_data_override or self.base / "output" / "data"

    @property
    def failure_path(self) -> Path:
        return self.base / "output" / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint_override or self.base / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.output_data_dir / "metrics.json"

    def channel(self, name: str) -> Path | None:
        """The folder of input channel ``name`` if it exists (``SM_CHANNEL_<NAME>`` wins), else ``None``."""
        path = self.channel_overrides.get(name.lower(), self.base / "input" / "data" / name)
        return path if path.exists() else None

    def read_hyperparameters(self) -> dict[str, str]:
        """The raw hyperparameters (string values); ``{}`` when the file is absent.

        Raises:
            ValueError: the file is not a JSON object.
        """
        path = self.hyperparameters_path
        if not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}

    def cluster(self) -> Cluster:
        """The job's hosts: ``SM_HOSTS`` / ``SM_CURRENT_HOST``, else ``resourceconfig.json``, else one local host.

        Raises:
            ValueError: ``SM_HOSTS`` or the resource config is malformed, or the current host is not among the hosts.
        """
        if self.hosts_override is not None:
            hosts = tuple(_host_list(self.hosts_override))
            return Cluster(hosts, self.current_host_override or hosts[0])
        path = self.resource_config_path
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            try:
                return Cluster(
                    tuple(str(h) for h in data["hosts"]),
                    str(data["current_host"]),
                    data.get("network_interface_name") or None,
                )
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}: needs 'hosts' (a list) and 'current_host': {exc}") from exc
        current = self.current_host_override or LOCAL_HOST
        return Cluster((current,), current)

    def write_failure(self, reason: str) -> None:
        """Write ``output/failure`` (SageMaker's FailureReason), at most 1024 characters."""
        self.failure_path.parent.mkdir(parents=True, exist_ok=True)
        text = reason.strip() or "training failed with no message"
        self.failure_path.write_text(text[:FAILURE_REASON_MAX], encoding="utf-8")

    def prepare(self) -> None:
        """Create the output folders (model, output/data, checkpoints)."""
        for path in (self.model_dir, self.output_data_dir, self.checkpoint_dir):
            path.mkdir(parents=True, exist_ok=True)


def _host_list(raw: str) -> list[str]:
    """``SM_HOSTS``: a JSON list of host names (``["algo-1","algo-2"]``).

    Raises:
        ValueError: not a JSON list of strings.
    """
    try:
        hosts = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"SM_HOSTS must be a JSON list of host names, got {raw!r}") from exc
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ValueError(f"SM_HOSTS must be a JSON list of host names, got {raw!r}")
    return hosts
