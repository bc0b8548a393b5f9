"""What a run keeps across training jobs, so that any re-created job (managed spot restart, retry, fallback)
carries on where the last one stopped.

The pipeline gives every job of a run the same ``CheckpointConfig.S3Uri`` (one prefix per run), which SageMaker
syncs to ``/opt/ml/checkpoints`` before the job starts and continuously while it runs. Under it:

``run-<fingerprint>/``          one folder per distinct training recipe (:func:`run_fingerprint`): a fallback
                                job with another student or teacher starts fresh beside it, never from it
``run-<fingerprint>/state/``    phase results as JSON (:class:`RunState`): the mode decision, the metrics after
                                evaluation before training, the injection training pairs, the end of training,
                                the metrics after evaluation after training; and ``runs.json``, the counters
``run-<fingerprint>/train/``    transformers ``checkpoint-<step>`` folders (with our ``stratos-rank<r>.json``:
                                the run's loss sum so far) and the top-k teacher logit cache

Checkpoints are written at phase boundaries, every ``checkpoint_interval_minutes`` of training (wall clock,
agreed by every rank: :class:`CheckpointClock`), at the end of training, and when SIGTERM arrives during
training (:func:`request_stop`: the step in progress finishes, a checkpoint is saved, the job exits 143).
A job that finds a phase's result reuses it and counts it as reused; a job that finds the whole run finished
only exports the model again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Hyperparameters that change how a run is laid out or reported, not what it computes: a job that differs
#: from the run's earlier jobs only in these resumes their checkpoints. The batch shape enters the fingerprint
#: as the global batch (and FSDP's world size, whose checkpoints are sharded per rank).
LAYOUT_ONLY: frozenset[str] = frozenset(
    {
        "eval_batch_size",
        "logging_steps",
        "save_steps",
        "checkpoint_interval_minutes",
        "parallelism",
        "per_device_batch_size",
        "grad_accum",
        # How an external teacher is called and priced, not what it answers (the reply cache keys on requests).
        "teacher_concurrency",
        "teacher_usd_per_1k_input",
        "teacher_usd_per_1k_output",
    }
)
#: Phases whose results are kept, in run order.
PHASES: tuple[str, ...] = ("probe", "evaluate_before", "injection_data", "train", "evaluate_after")
#: The per-rank sidecar each checkpoint folder gets (the run's loss sum up to that checkpoint).
RANK_STATE = "stratos-rank{rank}.json"


def run_fingerprint(hyperparameters: Mapping[str, Any], global_batch: int, fsdp_world: int | None) -> str:
    """16 hex digits naming a training recipe: every hyperparameter outside :data:`LAYOUT_ONLY`, the global batch
    (sequences per optimiser step) and, under FSDP, the world size (its checkpoints are sharded per rank).

    Two jobs with the same fingerprint compute the same run, so the later resumes the earlier's checkpoints.
    """
    recipe = {k: v for k, v in sorted(hyperparameters.items()) if k not in LAYOUT_ONLY}
    recipe["global_batch"] = global_batch
    recipe["fsdp_world"] = fsdp_world
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON atomically (a temporary file renamed over the target): a job killed mid-write
    leaves the previous version or none, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunState:
    """A run's persisted phase results and counters under ``root`` (``<checkpoint dir>/run-<fingerprint>``).

    Every rank reads; only the main process (``writer``) writes. Attributes:
        root: the run's folder.
        writer: this process writes (rank 0).
        job_index: 1 for the run's first job, 2 for the next one that found this run's state, ...
        reused: phases this job took from an earlier job, in order.
    """

    root: Path
    writer: bool
    job_index: int = 1
    reused: list[str] | None = None

    @classmethod
    def open(cls, checkpoint_dir: Path, fingerprint: str, writer: bool) -> RunState:
        """The run's state for ``fingerprint`` (created empty on the first job); counts this job in."""
        state = cls(checkpoint_dir / f"run-{fingerprint}", writer, reused=[])
        counters = state.counters()
        state.job_index = int(counters.get("jobs", 0)) + 1
        if writer:
            counters["jobs"] = state.job_index
            counters.setdefault("computed", {})
            counters.setdefault("reused", {})
            _write_json(state.state_dir / "runs.json", counters)
        return state

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def train_dir(self) -> Path:
        """Where transformers writes ``checkpoint-<step>`` folders (and the top-k cache)."""
        return self.root / "train"

    def counters(self) -> dict[str, Any]:
        """``{"jobs": n, "computed": {phase: times}, "reused": {phase: times}}`` over the whole run."""
        path = self.state_dir / "runs.json"
        if not path.exists():
            return {}
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    def get(self, phase: str) -> Any | None:
        """The result ``phase`` persisted, or None; a reuse is counted."""
        path = self.state_dir / f"{phase}.json"
        if not path.exists():
            return None
        payload = json.loads(path.read_text(encoding="utf-8"))
        self.note_reused(phase)
        logger.info("%s: reused from an earlier job of this run (%s)", phase, path)
        return payload

    def put(self, phase: str, payload: Any) -> None:
        """Persist ``phase``'s result (main process only) and count it as computed."""
        if not self.writer:
            return
        _write_json(self.state_dir / f"{phase}.json", payload)
        self.count_computed(phase)

    def note_reused(self, phase: str) -> None:
        """This job took ``phase`` from an earlier job (listed in ``reused``, counted)."""
        if self.reused is not None and phase not in self.reused:
            self.reused.append(phase)
        self._count("reused", phase)

    def count_computed(self, phase: str) -> None:
        """This job computed ``phase`` (counted over the run: ``phase_runs``)."""
        self._count("computed", phase)

    def _count(self, kind: str, phase: str) -> None:
        if not self.writer:
            return
        counters = self.counters()
        table = counters.setdefault(kind, {})
        table[phase] = int(table.get(phase, 0)) + 1
        _write_json(self.state_dir / "runs.json", counters)


# --- during training ----------------------------------------------------------------------------------------


class JobStopped(BaseException):
    """SIGTERM ended the job (a stop request, the maximum runtime, or a managed spot interruption); raised in the
    main thread, at once outside training, after a checkpoint during it."""


_STOP_REQUESTED = False
_TRAINING = False


def training_active() -> bool:
    """True while a :class:`CheckpointClock` drives training: SIGTERM then asks for a save-and-stop instead of
    raising at once (:func:`request_stop`)."""
    return _TRAINING


def set_training_active(active: bool) -> None:
    """Mark training as running (SIGTERM then saves before stopping) or not."""
    global _TRAINING
    _TRAINING = active


def request_stop() -> None:
    """SIGTERM during training: finish the current optimiser step, save a checkpoint, stop (the job then raises
    ``JobStopped``)."""
    global _STOP_REQUESTED
    _STOP_REQUESTED = True


def stop_requested() -> bool:
    return _STOP_REQUESTED


def agree(flags: list[int]) -> list[int]:
    """Element-wise max of ``flags`` over every rank (one tiny all-reduce; a no-op on one process)."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flags
    if torch.distributed.get_world_size() == 1:
        return flags
    tensor = torch.tensor(flags, dtype=torch.int64)
    if torch.distributed.get_backend() == "nccl":
        tensor = tensor.cuda()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return [int(x) for x in tensor.tolist()]


@dataclass(frozen=True)
class Carried:
    """What a checkpoint carries of the run beyond transformers' own state, for one rank.

    Attributes:
        loss_sum: this rank's sum of optimiser-step losses up to the checkpoint.
        train_seconds: training wall time of the run up to the checkpoint, s (every job's share).
    """

    loss_sum: float = 0.0
    train_seconds: float = 0.0


def write_carried(checkpoint: Path, rank: int, carried: Carried) -> None:
    """Write ``carried`` into a ``checkpoint-<step>`` folder (:data:`RANK_STATE`)."""
    _write_json(checkpoint / RANK_STATE.format(rank=rank), asdict(carried))


def read_carried(checkpoint: str | None, rank: int) -> Carried:
    """What ``checkpoint`` carries for ``rank`` (zeros for a fresh start or a folder without the sidecar)."""
    if not checkpoint:
        return Carried()
    path = Path(checkpoint) / RANK_STATE.format(rank=rank)
    if not path.exists():
        return Carried()
    return Carried(**json.loads(path.read_text(encoding="utf-8")))


def checkpoint_step(checkpoint: str | None) -> int:
    """The optimiser step a ``checkpoint-<step>`` folder was saved at (0 for None)."""
    if not checkpoint:
        return 0
    state = Path(checkpoint) / "trainer_state.json"
    if state.exists():
        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def mean_over_ranks(value: float) -> float:
    """``value`` averaged over every rank (itself on one process)."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        tensor = tensor.cuda()
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / torch.distributed.get_world_size()
