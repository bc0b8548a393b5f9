"""``train``: the container's entry point (SageMaker runs ``train`` in the image; locally the same command).

Contract: read ``input/config/hyperparameters.json`` (string values) into a validated config; run the job;
exit 0 with the model at the model-dir root and ``output/data/metrics.json``; on ANY error write a short,
specific ``output/failure`` (SageMaker's FailureReason) and exit non-zero. SIGTERM (a stop request, or the
job's maximum runtime) is recorded the same way and exits 143.

Topology (:mod:`stratos_train.parallel`): the hosts (``SM_HOSTS`` / ``resourceconfig.json``) and devices per
host (GPUs, 1 on CPU). With a ``parallelism`` plan the topology must be the plan's
(:meth:`~stratos_contract.parallelism.ParallelismPlan.check_runtime`) or the job fails here, before any weights
are loaded. With more than one process in all (several GPUs, or several hosts), it re-launches itself under
``torch.distributed.run``: one torchrun per host (``--nnodes``, ``--node_rank``, ``--master_addr`` = the first
host), one process per device; under torchrun (``LOCAL_RANK`` set) it runs as one rank.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType

from stratos_contract.parallelism import ParallelismError
from stratos_train.config import HyperparameterError, TrainConfig, parse_hyperparameters
from stratos_train.env import SageMakerEnv
from stratos_train.parallel import (
    Topology,
    check_worker,
    describe,
    leave_process_group,
    runtime_topology,
    socket_environment,
    torchrun_arguments,
)
from stratos_train.resume import JobStopped, request_stop, training_active

logger = logging.getLogger("stratos_train")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a stop, the maximum runtime, a managed spot interruption): during training, finish the step, save
    a checkpoint and stop (:mod:`stratos_train.resume`); elsewhere stop at once (phase results already saved
    stay saved)."""
    if training_active():
        logger.warning("received SIGTERM during training: saving a checkpoint at the end of this step")
        request_stop()
        return
    raise JobStopped("received SIGTERM: the job was stopped, reached its maximum runtime or was interrupted")


def _failure_reason(exc: BaseException) -> str:
    """One specific line: the error type and message, plus where it happened (last frame)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _check_topology(config: TrainConfig, env: SageMakerEnv) -> Topology:
    """This job's topology, checked against the plan (cheap: no weights, no model code).

    Raises:
        ParallelismError: the plan does not fit the hosts or devices (or this worker's world size).
    """
    topology = runtime_topology(env)
    plan = config.parallelism
    if plan is not None:
        plan.check_runtime(topology.nodes, topology.devices_per_node)
        if "LOCAL_RANK" in os.environ:
            check_worker(plan)
        else:
            logger.info("parallelism: %s", describe(plan))
    return topology


def _launch_workers(topology: Topology, env: SageMakerEnv, argv: Sequence[str]) -> int:
    """Run this host's share of the job under torchrun (one process per device) and wait for it. Returns the exit
    code: 0, 1 (a worker failed; its own ``output/failure`` is kept) or 143 (stopped: torchrun forwards SIGTERM
    to the workers and raises here)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    os.environ.update(socket_environment(topology.cluster))
    args = torchrun_arguments(topology, "stratos_train.entrypoint", argv)
    logger.info(
        "launching %d process(es) on host %d of %d: torchrun %s",
        topology.devices_per_node,
        topology.cluster.node_rank + 1,
        topology.nodes,
        " ".join(args),
    )
    env.failure_path.unlink(missing_ok=True)  # a failing worker writes the specific reason there
    try:
        torchrun(args)
    except Exception as exc:
        stopped = isinstance(exc, SignalException)
        if not env.failure_path.exists():
            reason = f"{exc}: the job was stopped or reached its maximum runtime"
            env.write_failure(reason if stopped else _failure_reason(exc))
        logger.error("training workers failed: %s", exc)
        return 143 if stopped else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training job. Returns the exit code (0 ok, 1 failed, 143 stopped)."""
    parser = argparse.ArgumentParser(prog="train", description="Stratos distillation training job")
    parser.add_argument(
        "--base-dir", default=None, help="the /opt/ml-shaped root (default $STRATOS_SM_BASE or /opt/ml)"
    )
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    env = SageMakerEnv.from_environ(args.base_dir)
    signal.signal(signal.SIGTERM, _on_sigterm)
    finished = False
    try:
        config = parse_hyperparameters(env.read_hyperparameters())
        topology = _check_topology(config, env)
        if topology.world_size > 1 and "LOCAL_RANK" not in os.environ:
            return _launch_workers(topology, env, list(argv) if argv is not None else sys.argv[1:])
        from stratos_train.job import run_job  # heavy imports after the cheap checks

        run_job(config, env)
        finished = True
    except HyperparameterError as exc:
        env.write_failure(f"invalid hyperparameters: {exc}")
        logger.error("invalid hyperparameters: %s", exc)
        return 1
    except ParallelismError as exc:
        env.write_failure(f"parallelism plan cannot run here: {exc}")
        logger.error("parallelism plan cannot run here: %s", exc)
        return 1
    except JobStopped as exc:
        env.write_failure(str(exc))
        logger.error("%s", exc)
        return 143
    except Exception as exc:
        env.write_failure(_failure_reason(exc))
        logger.exception("training job failed")
        return 1
    finally:
        leave_process_group(together=finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
