"""``train``: the container's entry point (SageMaker runs ``train`` in the image; locally the same command).

Contract: read ``input/config/hyperparameters.json`` (string values) into a validated config; run the job;
exit 0 with the model at the model-dir root and ``output/data/metrics.json``; on ANY error write a short,
specific ``output/failure`` (SageMaker's FailureReason) and exit non-zero. SIGTERM (a stop request, or the
job's maximum runtime) is recorded the same way and exits 143.

On a multi-GPU instance (``SM_NUM_GPUS`` > 1) it re-launches itself under ``torch.distributed.run`` with one
process per GPU, so every GPU trains (DDP); under torchrun (``LOCAL_RANK`` set) it runs as one rank.
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

from stratos_train.config import HyperparameterError, parse_hyperparameters
from stratos_train.env import SageMakerEnv

logger = logging.getLogger("stratos_train")


class JobStopped(BaseException):
    """Raised in the main thread when SIGTERM arrives."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise JobStopped("received SIGTERM: the job was stopped or reached its maximum runtime")


def _failure_reason(exc: BaseException) -> str:
    """One specific line: the error type and message, plus where it happened (last frame)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _maybe_relaunch_distributed(env: SageMakerEnv, argv: Sequence[str]) -> int | None:
    if env.num_gpus <= 1 or "LOCAL_RANK" in os.environ:
        return None
    from torch.distributed.run import main as torchrun

    logger.info("launching %d processes, one per GPU", env.num_gpus)
    torchrun(["--nproc_per_node", str(env.num_gpus), "-m", "stratos_train.entrypoint", *argv])
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
    try:
        config = parse_hyperparameters(env.read_hyperparameters())
        relaunched = _maybe_relaunch_distributed(env, list(argv) if argv is not None else sys.argv[1:])
        if relaunched is not None:
            return relaunched
        from stratos_train.job import run_job  # heavy imports after the cheap checks

        run_job(config, env)
    except HyperparameterError as exc:
        env.write_failure(f"invalid hyperparameters: {exc}")
        logger.error("invalid hyperparameters: %s", exc)
        return 1
    except JobStopped as exc:
        env.write_failure(str(exc))
        logger.error("%s", exc)
        return 143
    except Exception as exc:
        env.write_failure(_failure_reason(exc))
        logger.exception("training job failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
