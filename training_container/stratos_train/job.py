"""One distillation training job, end to end, inside the SageMaker contract.

:func:`run_job` runs six phases; each fills its part of one :class:`~stratos_contract.metrics.JobMetrics`,
written to ``output/data/metrics.json`` at the end:

1. **load** (:func:`load_phase`): the task's training and evaluation examples (generated or from the
   ``data``/``train``/``eval`` channels); teacher and student; tokenizer compatibility;
2. **probe** (:func:`probe_phase`): decide the mode (auto: probe the teacher on training problems; see
   :mod:`stratos_train.modes`);
3. **evaluate before** (:func:`evaluate_before_phase`): the teacher and the untrained student on the held-out
   set (and the KL between them, for alignment);
4. **train** (:func:`train_phase`): build the training set (alignment: reference targets + teacher logits;
   injection: verified data, optionally in closed-loop rounds) and train (LoRA or full), checkpointing to the
   checkpoint dir and resuming from its latest checkpoint, as the ``parallelism`` plan says
   (:mod:`stratos_train.parallel`: strategy, batch shape, checkpointing, where the teacher sits);
5. **evaluate after** (:func:`evaluate_after_phase`): the trained student on the held-out set(s);
6. **export** (:func:`export_phase`): the deployable model at the model-dir root with its card, metrics.json,
   the config, and the final ``[stratos-metrics]`` line.

**External teachers** (``teacher`` = ``bedrock:<model id>`` or ``sagemaker-endpoint:<name>``;
:mod:`stratos_train.teachers`): no teacher model is loaded. :func:`external_teacher` builds the client and checks
it answers before the student is loaded; everything the job asks of the teacher goes through it, on rank 0: the
probe and the teacher's evaluation row (its completions scored by the same score function as a loaded model's),
and Knowledge Injection's answer-conditioned rationales (kept only when the task's verifier accepts them). A
Bedrock model, or an endpoint asked for text (``teacher_topk`` 0), exposes text only: the mode is Knowledge
Injection (:mod:`stratos_train.modes`). An endpoint asked for ``teacher_topk`` > 0 log-probabilities exposes
top-k: once its token ids are checked to be the student's, alignment is top-k KD on its own verified answers
(:mod:`stratos_train.sequence_kd`). The held-out KL needs the teacher's full logits and is not measured. Its
replies are cached by content hash under the checkpoint folder (:data:`TEACHER_REPLIES`), and what it cost goes
into ``teacher_usage`` (:func:`note_teacher_usage`).

Under torchrun every rank loads, trains and joins the collectives; rank 0 alone probes the teacher (and tells
the others the mode), evaluates, exports and writes metrics: the other ranks stop after training.

Every phase's result is kept in the run's checkpoint folder (:mod:`stratos_train.resume`): a re-created job of
the same run (managed spot restart, retry, fallback) reuses the mode decision, the evaluation before training,
the injection data and the top-k teacher cache, resumes training from the last checkpoint, and a job that
finds the run finished only exports the model again. ``metrics.json`` then describes the whole run
(``final_loss``, ``train_seconds``, ``loss_history``) and says what was reused (``phases_reused``,
``phase_runs``, ``run_jobs``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PrinterCallback, TrainingArguments, get_scheduler

from stratos_contract.metrics import (
    EvalSetScores,
    JobMetrics,
    LossPoint,
    ModeEvidence,
    RoundMetrics,
    Sample,
    Strata,
    StratumRecord,
)
from stratos_contract.metrics import TeacherUsage as TeacherUsageRecord
from stratos_contract.parallelism import ParallelismError
from stratos_train.config import KDLossConfig, TrainConfig
from stratos_train.data import CompletionCollator, EncodedExample, ListDataset, encode_all, encode_example
from stratos_train.env import SageMakerEnv
from stratos_train.evaluate import EvalResult, cut_after_answer, evaluate, generate, heldout_kl, score_completions
from stratos_train.export import save_deployable
from stratos_train.lora import apply_lora, merge_for_deployment
from stratos_train.models import LoadedModel, load_model
from stratos_train.modes import (
    InjectionStats,
    ModeDecision,
    ModeError,
    ProbeResult,
    TeacherInterface,
    build_injection_set,
    check_interface,
    decide_mode,
)
from stratos_train.parallel import (
    PLAN_TOPK_DEFAULT,
    barrier,
    broadcast_from_main,
    decoder_layer_classes,
    describe,
    full_state_dict,
    init_process_group,
    is_main,
    is_released,
    rank,
    rebuild_unsharded,
    release,
    shard_frozen,
    world_size,
)
from stratos_train.resume import (
    JobStopped,
    RunState,
    checkpoint_step,
    mean_over_ranks,
    read_carried,
    run_fingerprint,
    stop_requested,
)
from stratos_train.rounds import (
    Patience,
    RoundReport,
    mean_accuracy,
    next_weights,
    probe_scores,
    round_sizes,
    uniform_weights,
)
from stratos_train.sequence_kd import (
    TOKEN_CHECK_REPLIES,
    SequenceKDStats,
    TokenSpaceCheck,
    check_token_space,
    completion_labels,
    endpoint_topk_cache,
    teacher_targets,
)
from stratos_train.tasks import get_task
from stratos_train.tasks.base import Answer, Example, Message, Task, pick_few_shot
from stratos_train.tasks.scoring import wilson_interval
from stratos_train.teachers import (
    ExternalTeacher,
    ExternalTeacherRef,
    SageMakerEndpointTeacher,
    TeacherError,
    TeacherReply,
    build_external_teacher,
    parse_teacher_source,
    sum_usage,
)
from stratos_train.trainer import (
    CheckpointClock,
    DistillationTrainer,
    MetricLinesCallback,
    build_teacher_topk_cache,
)

logger = logging.getLogger(__name__)

#: (prompt messages, target text): one training example before tokenisation.
Pair = tuple[list[Message], str]
#: ``build_pairs(examples, round)``: a round's examples -> training pairs (round 1 outside the closed loop).
PairBuilder = Callable[[list[Example], int], list[Pair]]
#: Held-out examples the teacher-student KL is measured on (a bounded cost: 64 forward passes of each model).
HELDOUT_KL_EXAMPLES = 64
#: Held-out completions kept in metrics.json for people to read.
SAMPLES_KEPT = 5


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_task(config: TrainConfig, env: SageMakerEnv) -> Task:
    """The task with its data channels wired in (gsm8k: ``data`` channel; jsonl: ``train``/``eval`` files)."""
    options = dict(config.task_options)
    if config.task == "gsm8k" and "data_dir" not in options:
        channel = env.channel("data")
        if channel is not None:
            options["data_dir"] = str(channel)
    if config.task == "jsonl":
        for split in ("train", "eval"):
            key = split
            channel = env.channel(split)
            if key not in options and channel is not None:
                files = sorted(channel.glob("*.jsonl")) if channel.is_dir() else [channel]
                if files:
                    options[key] = str(files[0])
    task: Task = get_task(config.task, **options)
    return task


def _score_fn(task: Task, examples: list[Example]) -> Callable[[str, int], tuple[float, float]]:
    def score(completion: str, index: int) -> tuple[float, float]:
        result = task.score(examples[index], completion)
        return float(result.correct), float(result.credit)

    return score


def _eval(
    loaded: LoadedModel | ExternalTeacher,
    task: Task,
    examples: list[Example],
    config: TrainConfig,
    label: str,
    shots: list[Example],
) -> EvalResult:
    """Greedy evaluation; ``answered`` is the fraction with a parseable final answer.

    An external teacher's completions (:func:`external_completions`) are scored by the same score function as a
    loaded model's, after the same cut at the answer line.

    Raises:
        TeacherError: an external teacher failed every call.
    """
    prompts = [task.prompt(ex, shots) for ex in examples]
    if isinstance(loaded, ExternalTeacher):
        start = time.perf_counter()
        texts, stopped = external_completions(loaded, prompts, config.max_new_tokens, config.stop_after_answer, label)
        result = score_completions(
            texts, stopped, _score_fn(task, examples), seconds=time.perf_counter() - start, label=label
        )
    else:
        result = evaluate(
            loaded.model,
            loaded.tokenizer,
            prompts,
            _score_fn(task, examples),
            max_new_tokens=config.max_new_tokens,
            batch_size=config.eval_batch_size,
            label=label,
            bf16=config.bf16,
            stop_after_answer=config.stop_after_answer,
        )
    answered = [task.extract_answer(text) is not None for text in result.completions]
    result.answered = sum(answered) / max(1, len(answered))
    return result


def external_completions(
    teacher: ExternalTeacher,
    prompts: Sequence[Sequence[Message]],
    max_new_tokens: int,
    stop_after_answer: bool,
    what: str,
) -> tuple[list[str], list[bool]]:
    """Greedy completions of an external teacher, shaped like :func:`~stratos_train.evaluate.generate`'s: with
    ``stop_after_answer``, each cut after its first closed answer line (the teacher writes on to its own end);
    and whether each ended before ``max_new_tokens`` (its end, or the cut). A ``filtered`` or ``error`` reply
    is the empty text, which scores wrong and which a verifier rejects.

    Raises:
        TeacherError: every call failed (the teacher broke after its reachability check): a teacher row of zeros
            or an injection set without rationales would hide it.
    """
    replies = teacher.generate(prompts, max_new_tokens=max_new_tokens)
    failed = [reply for reply in replies if reply.stop == "error"]
    if failed and len(failed) == len(replies):
        raise TeacherError(
            f"teacher {teacher.source}: all {len(replies)} calls for the {what} failed; the first: {failed[0].detail}"
        )
    if failed:
        logger.warning(
            "teacher %s: %d of %d %s calls failed (scored as empty)", teacher.source, len(failed), len(replies), what
        )
    texts: list[str] = []
    stopped: list[bool] = []
    for reply in replies:
        text, cut = cut_after_answer(reply.text) if stop_after_answer else (reply.text, False)
        texts.append(text)
        stopped.append(cut or reply.stop == "end")
    return texts, stopped


def strata_table(task: Task, examples: Sequence[Example], exact: Sequence[float]) -> Strata:
    """Per-stratum tallies of scored examples; empty for a task without strata."""
    scores = probe_scores([task.stratum(ex) for ex in examples], [e >= 1.0 for e in exact], task.strata())
    return {k: StratumRecord(correct=v.correct, n=v.n, accuracy=round(v.accuracy, 4)) for k, v in scores.items()}


def student_over_teacher(student: float, teacher: float, n: int) -> dict[str, float | None]:
    """The honest ratio: student accuracy over the teacher's point accuracy (None when the teacher scores 0)
    and over the teacher's Wilson 95 % upper bound (never floored; :func:`~stratos_train.tasks.scoring.
    wilson_interval`), both on the same ``n`` held-out examples."""
    upper = wilson_interval(round(teacher * n), n)[1]
    return {
        "teacher_accuracy_upper95": round(upper, 5),
        "student_over_teacher": student / teacher if teacher > 0 else None,
        "student_over_teacher_upper95": student / upper,
    }


def _eval_row(result: EvalResult, task: Task, examples: Sequence[Example]) -> EvalSetScores:
    """One further evaluation set's figures for metrics.json."""
    return EvalSetScores(
        accuracy=result.accuracy,
        partial=result.partial,
        answered=result.answered,
        examples=len(examples),
        correct=int(sum(result.exact)),
        seconds=round(result.seconds, 2),
        strata=strata_table(task, examples, result.exact),
    )


def _build_trainer(
    model: Any,
    args: TrainingArguments,
    encoded: Sequence[EncodedExample],
    collator: CompletionCollator,
    kd: KDLossConfig,
    teacher: Any,
    shared_vocab: int | None,
    config: TrainConfig,
    topk_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    optimizers: tuple[Any, Any] = (None, None),
) -> tuple[DistillationTrainer, MetricLinesCallback]:
    """A :class:`DistillationTrainer` with the metric-lines callback (and no console printer)."""
    ref: list[DistillationTrainer] = []
    metric_lines = MetricLinesCallback(ref)
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=ListDataset(list(encoded)),
        data_collator=collator,
        teacher=teacher,
        kd_config=kd,
        shared_vocab_size=shared_vocab,
        shuffle=config.shuffle,
        teacher_topk_cache=topk_cache,
        callbacks=[metric_lines],
        optimizers=optimizers,
    )
    trainer.remove_callback(PrinterCallback)
    ref.append(trainer)
    return trainer, metric_lines


def _round_args(config: TrainConfig, output_dir: str, max_steps: int) -> TrainingArguments:
    """TrainingArguments of one closed-loop round: one pass, no warm-up of its own and a checkpoint at its end
    only (the loop owns the optimiser and the schedule across rounds)."""
    return config.training_arguments(
        output_dir, max_steps=max_steps, save_steps=max_steps, num_train_epochs=1.0, warmup_steps=0.0
    )


def train_in_rounds(
    config: TrainConfig,
    run: RunState,
    task: Task,
    student: LoadedModel,
    model: Any,
    build_pairs: PairBuilder,
    metrics: JobMetrics,
) -> Any:
    """Knowledge Injection as a closed loop (:mod:`stratos_train.rounds`); returns the trained model.

    ``build_pairs(examples, round)`` turns a round's examples into (prompt, target) pairs. Fills
    ``metrics.injection_rounds`` (one :class:`RoundReport` each) and the usual training figures, summed over
    rounds.

    Across jobs: at the end of each round (after its probe) the loop's state, the student's weights and the
    optimiser and schedule are kept in the run's folder; a later job restores the last finished round and goes
    on with the next one, or resumes the round in progress from its last checkpoint.
    """
    strata = task.strata()
    sizes = round_sizes(config.train_size, config.injection_rounds)
    steps = [config.steps_per_epoch(n, world_size()) for n in sizes]
    collator = CompletionCollator(student.tokenizer.pad_token_id)
    kd = config.kd_loss_config(cross_entropy_only=True)
    probe = task.stratified_examples(
        "train", config.probe_per_stratum * len(strata), config.seed + 7_919, uniform_weights(strata)
    )
    seen: set[str] = {ex.id for ex in probe}
    weights = uniform_weights(strata)
    stop = Patience(config.round_patience, config.round_min_gain)
    optimizers: tuple[Any, Any] = (None, None)
    reports: list[dict[str, Any]] = []  # RoundMetrics, as JSON
    history: list[LossPoint] = []
    totals = {"examples": 0, "tokens": 0, "total_tokens": 0, "steps": 0}
    seconds = 0.0
    finished = 0  # rounds an earlier job of the run finished
    stopped = False  # and the last of them ended the loop
    while finished < len(sizes) and (kept := run.get(f"round-{finished + 1}")) is not None:
        finished += 1
        reports, totals, seconds = kept["reports"], kept["totals"], kept["seconds"]
        history = [LossPoint.model_validate(h) for h in kept["history"]]
        seen, weights = set(kept["seen"]), kept["next_weights"]
        stop = Patience(**kept["patience"])
        metrics.final_loss = kept["final_loss"]
        stopped = kept["stop"]
        if stopped:
            break
    logger.info("closed loop: up to %d rounds of %s examples, probe %d per stratum", len(sizes), sizes, len(probe))
    if finished:
        boundary = run.train_dir / f"round-{finished}" / "end"
        load_model_weights(model, boundary / "weights.safetensors")
        logger.info("closed loop: rounds 1-%d finished by an earlier job of this run", finished)
    for index, (size, max_steps) in enumerate(zip(sizes, steps, strict=True), start=1):
        if index <= finished or stopped:
            continue
        started = time.perf_counter()
        drawn = task.stratified_examples("train", size + size // 10 + 8, config.seed + 1_000 * index, weights)
        examples = [ex for ex in drawn if ex.id not in seen][:size]
        seen.update(ex.id for ex in examples)
        encoded, enc_stats = encode_all(student.tokenizer, build_pairs(examples, index), config.max_seq_len)
        round_dir = run.train_dir / f"round-{index}"
        args = _round_args(config, str(round_dir), max_steps)
        trainer, _ = _build_trainer(model, args, encoded, collator, kd, None, None, config, None, optimizers)
        if optimizers[0] is None:
            optimizer = trainer.create_optimizer()
            schedule = get_scheduler(
                config.lr_scheduler,
                optimizer,
                num_warmup_steps=round(config.warmup_ratio * sum(steps)),
                num_training_steps=sum(steps),
            )
            if finished:  # carry on from the last finished round's optimiser and schedule
                states = torch.load(run.train_dir / f"round-{finished}" / "end" / "optim.pt", weights_only=True)
                optimizer.load_state_dict(states["optimizer"])
                schedule.load_state_dict(states["scheduler"])
            trainer.lr_scheduler = schedule
            optimizers = (optimizer, schedule)
        last = broadcast_from_main(_resume_point(round_dir, max_steps))
        carried = read_carried(last, rank())
        trainer.loss_sum_carried = carried.loss_sum
        clock = CheckpointClock(config.checkpoint_interval_minutes * 60, carried, trainer.run_loss_sum)
        trainer.add_callback(clock)
        output = trainer.train(resume_from_checkpoint=last)
        if stop_requested():
            raise JobStopped(
                f"received SIGTERM: stopped in round {index} at step {output.global_step} of {max_steps} after "
                "saving a checkpoint; a re-created job of this run resumes from it"
            )
        model.eval()
        result = _eval(
            LoadedModel(model, student.tokenizer, config.student, student.real_vocab_size, student.tokenizer_family),
            task,
            probe,
            config,
            f"round {index} probe",
            [],
        )
        model.train()
        scores = probe_scores([task.stratum(ex) for ex in probe], [e >= 1.0 for e in result.exact], strata)
        report = RoundReport(
            round=index,
            examples=len(encoded),
            train_tokens=enc_stats.completion_tokens,
            weights=weights,
            drawn={label: sum(1 for ex in examples if task.stratum(ex) == label) for label in strata},
            probe=scores,
            probe_accuracy=mean_accuracy(scores),
            seconds=time.perf_counter() - started,
        )
        reports.append(report.as_metrics().model_dump(mode="json"))
        history += [
            LossPoint(step=totals["steps"] + p.step, train_loss=p.train_loss, round=index)
            for p in _logged_losses(trainer.state.log_history)
        ]
        totals["examples"] += len(encoded)
        totals["tokens"] += enc_stats.completion_tokens
        totals["total_tokens"] += enc_stats.total_tokens
        totals["steps"] += output.global_step
        seconds += clock.run_train_seconds()
        metrics.final_loss = mean_over_ranks(trainer.run_loss_sum()) / max(1, output.global_step)
        logger.info(
            "round %d: %d examples, probe accuracy %.3f (%s)",
            index,
            len(encoded),
            report.probe_accuracy,
            ", ".join(f"{k} {v.accuracy:.2f}" for k, v in scores.items()),
        )
        done = stop.update(report.probe_accuracy) or index == len(sizes)
        if not done:
            weights = next_weights(scores, config.round_weight_floor)
        if is_main():  # the round's end, for a job that comes after
            boundary = round_dir / "end"
            boundary.mkdir(parents=True, exist_ok=True)
            save_model_weights(model, boundary / "weights.safetensors")
            torch.save(
                {"optimizer": optimizers[0].state_dict(), "scheduler": optimizers[1].state_dict()},
                boundary / "optim.pt",
            )
        run.put(
            f"round-{index}",
            {
                "reports": reports,
                "totals": totals,
                "seconds": seconds,
                "history": [h.model_dump(mode="json") for h in history],
                "seen": sorted(seen),
                "next_weights": weights,
                "patience": asdict(stop),
                "final_loss": metrics.final_loss,
                "stop": done,
            },
        )
        if done:
            break
    metrics.injection_rounds = [RoundMetrics.model_validate(r) for r in reports]
    metrics.injection_rounds_run = len(reports)
    metrics.train_examples = totals["examples"]
    metrics.train_tokens = totals["tokens"]
    metrics.train_total_tokens = totals["total_tokens"]
    metrics.train_steps = totals["steps"]
    metrics.train_seconds = round(seconds, 2)
    metrics.resumed_from = ""
    metrics.loss_history = history
    return model


def save_model_weights(model: Any, path: Any) -> None:
    """Every weight of ``model`` (tied ones once) to a safetensors file."""
    from safetensors.torch import save_model

    save_model(model, str(path))


def load_model_weights(model: Any, path: Any) -> None:
    """Load :func:`save_model_weights`'s file into a model of the same structure (strict)."""
    from safetensors.torch import load_model

    load_model(model, str(path), strict=True)


@dataclass(frozen=True)
class JobContext:
    """What the phases after loading read: the config, the paths, the task's examples and the two models.

    Attributes:
        teacher: the loaded teacher; ``None`` for an external teacher (``external``), which the job only calls.
        shared_vocab: the real vocabulary teacher and student share (logits sliced to it); ``None`` when their
            tokenizers differ (no logit-level alignment possible) or the teacher is external.
        shots: solved training examples put into the teacher's evaluation prompts (``few_shot``).
        started: ``time.perf_counter()`` at the job's start (``job_seconds``).
        external: the external teacher's client (``bedrock:`` / ``sagemaker-endpoint:`` sources); ``None`` for a
            loaded teacher.
    """

    config: TrainConfig
    env: SageMakerEnv
    task: Task
    train_examples: list[Example]
    eval_examples: list[Example]
    extra_sets: dict[str, list[Example]]
    teacher: LoadedModel | None
    student: LoadedModel
    shared_vocab: int | None
    shots: list[Example]
    started: float
    run: RunState
    external: ExternalTeacher | None = None

    @property
    def teacher_generator(self) -> LoadedModel | ExternalTeacher:
        """What answers as the teacher (probe, evaluation): the external client, else the loaded model."""
        if self.external is not None:
            return self.external
        if self.teacher is None:
            raise ValueError("the job has no teacher")
        return self.teacher

    def heldout_pairs(self) -> list[Pair]:
        """(prompt, reference) of the first :data:`HELDOUT_KL_EXAMPLES` held-out examples."""
        return [(self.task.prompt(ex), self.task.target(ex)) for ex in self.eval_examples[:HELDOUT_KL_EXAMPLES]]

    def kl_vocab(self, decision: ModeDecision) -> int | None:
        """The shared vocabulary when the held-out KL to the teacher is measured (it is what alignment moves),
        else ``None``."""
        return self.shared_vocab if decision.mode == "alignment" else None


#: The external teacher's reply cache, under the checkpoint folder (one S3 prefix per pipeline run, synced by
#: SageMaker) beside the ``run-<fingerprint>`` folders, not inside one: every job of the pipeline run (a resume,
#: a retry, a fallback with another student, a re-run with other prices or concurrency) reuses the answers. The
#: cache key covers the teacher and the whole request, so sharing it across recipes is safe.
TEACHER_REPLIES = "teacher-replies"
#: The run's external-teacher usage, one :meth:`~stratos_train.teachers.TeacherUsage.as_dict` per job that used
#: the teacher (keyed by job index), in the run's ``state`` folder.
TEACHER_USAGE_FILE = "teacher-usage.json"
#: Phases that ask an external teacher before its training data is built (rationales or top-k targets): once an
#: earlier job of the run kept them and that data (or the trained model), this job neither checks nor calls it.
_TEACHER_PHASES = ("probe", "evaluate_before")


def teacher_interface(config: TrainConfig) -> tuple[TeacherInterface, str]:
    """What ``config.teacher`` exposes to this job (:data:`~stratos_train.modes.TeacherInterface`) and, for
    ``text``, why it exposes no more (for messages). A loaded teacher: ``logits``. Bedrock: ``text`` (Converse
    returns nothing else). An endpoint: ``top-k`` when ``teacher_topk`` > 0 (TGI's ``top_n_tokens``; Knowledge
    Injection forced by the spec asks for text only), else ``text``.

    Raises:
        TeacherError: the source starts ``bedrock:`` / ``sagemaker-endpoint:`` but is malformed.
    """
    ref = parse_teacher_source(config.teacher)
    if ref is None:
        return "logits", ""
    if ref.kind == "bedrock":
        return "text", "Bedrock's Converse API returns no log-probabilities"
    if not config.teacher_topk or config.mode == "injection":
        return "text", "teacher_topk is 0: the endpoint is asked for its text only"
    if config.teacher_prompt_format != "chat":
        return "text", (
            "top-k alignment needs teacher_prompt_format 'chat': with plain-text prompts the endpoint's answer "
            "follows 'Assistant:', not the student's chat turn, so its tokens are not the student's"
        )
    return "top-k", ""


def teacher_region(ref: ExternalTeacherRef) -> str:
    """The AWS region to call an external teacher in: ``AWS_REGION``, else ``AWS_DEFAULT_REGION`` (the job's
    region), else the region a Bedrock ARN names.

    Raises:
        TeacherError: none of them is set.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ref.arn_region
    if not region:
        raise TeacherError(
            f"teacher {ref.source}: no AWS region to call it in: set AWS_REGION or AWS_DEFAULT_REGION, or name a "
            "Bedrock model by its ARN"
        )
    return region


def external_teacher(config: TrainConfig, env: SageMakerEnv, run: RunState) -> ExternalTeacher | None:
    """The client of an external teacher (``bedrock:`` / ``sagemaker-endpoint:``), checked reachable; ``None``
    for a teacher the job loads. Called before any model is loaded, so a teacher the job cannot use fails the
    job at once, never mid-training.

    The client: region :func:`teacher_region`; the config's prompt format, concurrency and prices; its reply
    cache in :data:`TEACHER_REPLIES` under the checkpoint folder. An endpoint is asked for ``teacher_topk``
    log-probabilities per generated token unless the mode is ``injection`` (which uses text); Bedrock with
    ``teacher_topk`` > 0 is refused (Converse returns none). The reachability check (a 1-token Converse, or
    DescribeEndpoint) runs on rank 0 unless an earlier job of the run already kept every phase that calls the
    teacher (:data:`_TEACHER_PHASES`), so a re-run of a finished job makes no call at all.

    Raises:
        ModeError: ``alignment`` forced with a text-only teacher, or ``teacher_topk`` > 0 with Bedrock outside
            ``injection``.
        TeacherError: a malformed source, no region, a bad setting, or the teacher is unreachable (the message
            says which and why; it becomes ``output/failure``).
    """
    ref = parse_teacher_source(config.teacher)
    if ref is None:
        return None
    interface, why = teacher_interface(config)
    if config.teacher_topk and config.mode != "injection" and ref.kind == "bedrock":
        raise ModeError(
            f"teacher_topk {config.teacher_topk} with the external teacher {ref.source}: Bedrock's Converse API "
            "returns no log-probabilities; set teacher_topk 0 (the job then distils by Knowledge Injection from the "
            "teacher's text) or mode 'injection'"
        )
    check_interface(config.mode, interface, why)
    if config.teacher_topk and interface != "top-k":
        logger.info(
            "teacher %s: teacher_topk %d ignored (Knowledge Injection uses text)", ref.source, config.teacher_topk
        )
    teacher = build_external_teacher(
        ref,
        region=teacher_region(ref),
        top_k=config.teacher_topk if interface == "top-k" else 0,
        prompt_format=config.teacher_prompt_format,
        concurrency=config.teacher_concurrency,
        cache_dir=env.checkpoint_dir / TEACHER_REPLIES,
        input_usd_per_1k=config.teacher_usd_per_1k_input,
        output_usd_per_1k=config.teacher_usd_per_1k_output,
    )

    def check() -> None:
        def kept(phase: str) -> bool:
            return (run.state_dir / f"{phase}.json").exists()

        # Past the probe and the evaluation, the teacher is asked only while the training data is built: once
        # an earlier job kept that data (rationales or top-k targets) or the trained model, nothing is left.
        if all(kept(p) for p in _TEACHER_PHASES) and any(kept(p) for p in ("train", "injection_data", TOPK_TARGETS)):
            logger.info("teacher %s: an earlier job of this run did all it is asked for: not checked", ref.source)
            return
        teacher.check_reachable()
        logger.info("teacher %s: reachable in %s (%s)", ref.source, teacher.region, interface)

    on_main(check)
    return teacher


def on_main(call: Callable[[], Any]) -> Any:
    """``call()`` on rank 0 only (an external teacher is called once per job, not once per rank); its result on
    every rank, and its :class:`TeacherError` raised on every rank (a no-op broadcast on one process).

    Raises:
        TeacherError: ``call`` raised one on rank 0.
    """
    value: Any = None
    failure: TeacherError | None = None
    if is_main():
        try:
            value = call()
        except TeacherError as exc:
            failure = exc
    value, message = broadcast_from_main((value, None if failure is None else str(failure)))
    if failure is not None:
        raise failure
    if message is not None:
        raise TeacherError(message)
    return value


def note_teacher_usage(ctx: JobContext, metrics: JobMetrics) -> None:
    """Keep this job's external-teacher usage in the run's state (:data:`TEACHER_USAGE_FILE`) and set
    ``metrics.teacher_usage`` to the run's: every job's summed, with this job's share. Rank 0 only; a no-op for
    a loaded teacher. A job that neither called the teacher nor read its cache leaves no entry."""
    if ctx.external is None or not is_main():
        return
    path = ctx.run.state_dir / TEACHER_USAGE_FILE
    jobs: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    mine = ctx.external.usage.as_dict()
    if mine["calls"] or mine["cache_hits"]:
        jobs[str(ctx.run.job_index)] = mine
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(jobs, indent=2), encoding="utf-8")
        os.replace(tmp, path)  # a job killed mid-write leaves the previous version
    if not jobs:  # nothing asked yet (an endpoint's reachability check is DescribeEndpoint, not a call)
        return
    metrics.teacher_usage = TeacherUsageRecord(
        **sum_usage(jobs.values()), jobs=len(jobs), job_calls=mine["calls"], job_usd=mine["usd"]
    )


def load_phase(config: TrainConfig, env: SageMakerEnv, started: float) -> tuple[JobContext, JobMetrics]:
    """Prepare the job's folders, seed, build the task's examples, open the run's state and load both models
    (an external teacher: build its client and check it answers, before the student is loaded; no teacher
    model is loaded).

    Fills ``task``, ``teacher``, ``student`` (the sources: how the models were loaded, e.g.
    ``channel:student@layers=15``), ``teacher_id``/``student_id`` (the catalog ids: which they are) when given,
    and ``teacher_usage`` for an external teacher.

    Raises:
        ModeError, TeacherError: an external teacher the job cannot use (:func:`external_teacher`).
    """
    env.prepare()
    seed_everything(config.seed)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes sharing this host's cores
    torch.set_num_threads(max(1, int(os.environ.get("STRATOS_THREADS", (os.cpu_count() or 1) // local_procs))))
    task = build_task(config, env)
    train_examples = task.examples("train", config.train_size, config.seed)
    eval_examples = task.examples("eval", config.eval_size, config.seed)
    extra_sets = task.extra_eval_sets(config.eval_size, config.seed) if config.extra_eval else {}
    logger.info(
        "task %s: %d train, %d eval examples%s",
        task.name,
        len(train_examples),
        len(eval_examples),
        "".join(f", {len(v)} {k}" for k, v in extra_sets.items()),
    )

    world = world_size()
    plan = config.parallelism
    run = RunState.open(
        env.checkpoint_dir,
        run_fingerprint(
            config.model_dump(mode="json"),
            global_batch=config.per_device_batch_size * config.grad_accum * world,
            fsdp_world=world if plan is not None and plan.strategy == "fsdp_full_shard" else None,
        ),
        writer=is_main(),
    )
    logger.info("run state %s: job %d of this run", run.root, run.job_index)
    external = external_teacher(config, env, run)  # before any weights: an unusable teacher fails the job now

    channels = {name: path for name in ("teacher", "student") if (path := env.channel(name)) is not None}
    corpus = [task.target(ex) + " " + task.prompt(ex)[-1]["content"] for ex in train_examples[:200]]
    teacher = None if external is not None else load_model(config.teacher, channels, corpus=corpus)
    student = load_model(config.student, channels, corpus=corpus, tokenizer=_shared_tiny_tokenizer(config, teacher))
    compatible = teacher is not None and teacher.tokenizer_family == student.tokenizer_family
    logger.info(
        "teacher %s (%s), student %s (%.1fM params), tokenizers %s",
        config.teacher,
        "external: called, not loaded"
        if teacher is None
        else f"{sum(p.numel() for p in teacher.model.parameters()) / 1e6:.1f}M params",
        config.student,
        sum(p.numel() for p in student.model.parameters()) / 1e6,
        "external teacher" if teacher is None else "shared" if compatible else "differ",
    )
    context = JobContext(
        config=config,
        env=env,
        task=task,
        train_examples=train_examples,
        eval_examples=eval_examples,
        extra_sets=extra_sets,
        teacher=teacher,
        student=student,
        shared_vocab=min(teacher.real_vocab_size, student.real_vocab_size) if teacher and compatible else None,
        shots=pick_few_shot(train_examples, config.few_shot, config.seed) if config.few_shot else [],
        started=started,
        run=run,
        external=external,
    )
    metrics = JobMetrics(task=task.name, teacher=config.teacher, student=config.student)
    if config.teacher_id:
        metrics.teacher_id = config.teacher_id
    if config.student_id:
        metrics.student_id = config.student_id
    note_teacher_usage(context, metrics)
    return context, metrics


def probe_phase(ctx: JobContext, metrics: JobMetrics) -> ModeDecision:
    """Decide the mode (the teacher probe runs on the main process only, which tells the other ranks). Fills
    ``mode``, ``mode_reason`` and ``mode_evidence``."""
    config, task = ctx.config, ctx.task

    def probe() -> ProbeResult:
        sample = ctx.train_examples[: config.probe_size]
        result = _eval(ctx.teacher_generator, task, sample, config, "teacher probe", ctx.shots)
        return ProbeResult.from_scores(result.exact, result.partial, [float(task.complexity(ex)) for ex in sample])

    # Every rank takes the same branch (the token check below is a collective).
    saved = broadcast_from_main(ctx.run.get("probe") if is_main() else None)
    if saved is not None:
        decision = ModeDecision(**saved["decision"])
    else:
        interface, why = teacher_interface(config)
        compatible = ctx.shared_vocab is not None
        if interface == "top-k":
            check = endpoint_token_check(ctx)
            compatible, why = check.ok, check.why
            logger.info(
                "teacher %s: %d token ids checked against the student's tokenizer: %s",
                config.teacher,
                check.tokens,
                "the same" if check.ok else check.why,
            )
        decision = decide_mode(
            config.mode,
            compatible=compatible,
            threshold=config.coverage_threshold,
            probe=probe if is_main() else lambda: ProbeResult.from_scores([], 0.0, []),
            complexity_unit=task.complexity_unit,
            interface=interface,
            interface_why=why,
        )
        note_teacher_usage(ctx, metrics)
        ctx.run.put("probe", {"decision": asdict(decision)})
    decision = broadcast_from_main(decision)  # only rank 0 probed: every rank trains in its mode
    if decision.mode == "injection" and isinstance(ctx.external, SageMakerEndpointTeacher) and ctx.external.top_k:
        ctx.external.top_k = 0  # injection reads text: a container that refused top_n_tokens still answers
    logger.info("mode %s: %s", decision.mode, decision.reason)
    metrics.mode = decision.mode
    metrics.mode_reason = decision.reason
    metrics.mode_evidence = ModeEvidence.model_validate(decision.evidence())
    return decision


def endpoint_token_check(ctx: JobContext) -> TokenSpaceCheck:
    """Ask the endpoint teacher for the first :data:`~stratos_train.sequence_kd.TOKEN_CHECK_REPLIES` training
    targets (the very requests top-k training sends, so training reads them from the reply cache) and check that
    its token ids are the student's (:func:`~stratos_train.sequence_kd.check_token_space`). Rank 0 calls; every
    rank gets the result (a collective).

    Raises:
        TeacherError: the teacher failed on rank 0 in a way the client raises (a bad prompt).
    """
    external = ctx.external
    if external is None:
        raise ValueError("the token check needs an external teacher")
    prompts = [ctx.task.prompt(ex) for ex in ctx.train_examples[:TOKEN_CHECK_REPLIES]]

    def check() -> TokenSpaceCheck:
        replies = external.generate(prompts, max_new_tokens=ctx.config.max_new_tokens)
        labels = []
        for prompt, reply in zip(prompts, replies, strict=True):
            row, _ = encode_example(ctx.student.tokenizer, prompt, reply.text, ctx.config.max_seq_len)
            labels.append(None if row is None else completion_labels(row))
        return check_token_space(replies, ctx.student.tokenizer, ctx.student.real_vocab_size, labels)

    result: TokenSpaceCheck = on_main(check)
    return result


def evaluate_before_phase(ctx: JobContext, decision: ModeDecision, metrics: JobMetrics) -> None:
    """Score the teacher (``evaluate_teacher``; with its few-shot prompts) and the untrained student
    (``evaluate_before``) on the held-out set, on the main process; measure the held-out KL for alignment.

    Fills ``teacher_*``, ``eval_sets.*.teacher``, ``student_before_*`` and ``heldout_kl_before`` (never for an
    external teacher: the KL needs its logits); ``teacher_usage`` after an external teacher's evaluation.
    """
    config, task, examples = ctx.config, ctx.task, ctx.eval_examples
    saved = ctx.run.get("evaluate_before") if is_main() else None
    if saved is not None:
        restore_metrics(metrics, saved["metrics"])
        barrier()
        return
    if is_main() and config.evaluate_teacher:
        teacher_eval = _eval(ctx.teacher_generator, task, examples, config, "teacher", ctx.shots)
        metrics.teacher_accuracy = teacher_eval.accuracy
        metrics.teacher_partial = teacher_eval.partial
        metrics.teacher_answered = teacher_eval.answered
        metrics.teacher_eval_seconds = round(teacher_eval.seconds, 2)
        metrics.teacher_strata = strata_table(task, examples, teacher_eval.exact)
        for name, extra in ctx.extra_sets.items() if config.extra_eval_teacher else ():
            row = _eval_row(
                _eval(ctx.teacher_generator, task, extra, config, f"teacher {name}", ctx.shots), task, extra
            )
            metrics.eval_set(name).teacher = row
        note_teacher_usage(ctx, metrics)
    if is_main() and config.evaluate_before:
        before = _eval(ctx.student, task, examples, config, "student before", [])
        metrics.student_before_accuracy = before.accuracy
        metrics.student_before_partial = before.partial
        metrics.student_before_answered = before.answered
        metrics.student_before_eval_seconds = round(before.seconds, 2)
    kl_vocab = ctx.kl_vocab(decision)
    if is_main() and kl_vocab is not None and ctx.teacher is not None:
        metrics.heldout_kl_before = heldout_kl(
            ctx.teacher.model,
            ctx.student.model,
            ctx.student.tokenizer,
            ctx.heldout_pairs(),
            vocab_size=kl_vocab,
            max_seq_len=config.max_seq_len,
        )
    ctx.run.put("evaluate_before", {"metrics": metrics.written()})
    barrier()


def restore_metrics(metrics: JobMetrics, saved: Mapping[str, Any]) -> None:
    """Set on ``metrics`` every field a phase of an earlier job of the run had set (``saved``: its
    ``written()``)."""
    restored = JobMetrics.model_validate({**metrics.written(), **saved})  # typed, nested models rebuilt
    for name in saved:
        setattr(metrics, name, getattr(restored, name))


def _record_injection_data(metrics: JobMetrics, stats: InjectionStats) -> None:
    """The provenance of the Knowledge Injection training set (``injection_*``)."""
    metrics.injection_examples = stats.examples
    metrics.injection_teacher_asked = stats.teacher_asked
    metrics.injection_teacher_rationales = stats.teacher_accepted
    metrics.injection_teacher_rejected = stats.teacher_rejected
    metrics.injection_teacher_rejection_rate = round(stats.teacher_rejection_rate, 4)
    metrics.injection_programmatic_reasoning = stats.programmatic_reasoning
    metrics.injection_reference_reasoning = stats.reference_reasoning
    metrics.injection_rejection_reasons = dict(stats.rejection_reasons)


def _injection_pairs(ctx: JobContext, metrics: JobMetrics) -> PairBuilder:
    """Knowledge Injection's pair builder: verified targets, with the teacher's answer-conditioned rationales
    asked once (first round), within the ``rationale_samples`` budget; the teacher is freed after that (it has
    nothing left to do: ``generation_only``). Fills ``injection_*`` in round 1.

    An external teacher is asked through its client (rank 0 only; the other ranks receive its texts), with the
    same token budget and the same cut at the answer line as a loaded one; its usage goes into
    ``teacher_usage``."""
    config = ctx.config
    budget = config.rationale_tokens + config.max_new_tokens  # a rationale explains, then writes its answer line

    def teacher_generate(prompts: list[list[Message]]) -> list[str]:
        external = ctx.external
        if external is not None:
            texts: list[str] = on_main(
                lambda: external_completions(external, prompts, budget, config.stop_after_answer, "rationales")[0]
            )
            return texts
        if ctx.teacher is None:
            raise ValueError("the job has no teacher")
        texts, _ = generate(
            ctx.teacher.model,
            ctx.teacher.tokenizer,
            prompts,
            max_new_tokens=budget,
            batch_size=config.eval_batch_size,
            bf16=config.bf16,
            stop_after_answer=config.stop_after_answer,
        )
        return texts

    def fits_budget(target: str) -> bool:
        """The student can write ``target`` within its decoding budget (its own tokens, end of turn aside)."""
        tokens = ctx.student.tokenizer(target, add_special_tokens=False)["input_ids"]
        return len(tokens) <= config.max_new_tokens

    def build_pairs(examples: list[Example], round_index: int) -> list[Pair]:
        saved = ctx.run.get("injection_data") if round_index == 1 else None
        if saved is not None:  # every rank reads it: each trains on the same pairs
            restore_metrics(metrics, saved["metrics"])
            _release_teacher(ctx, "Knowledge Injection: the training data is built (by an earlier job)")
            return [(list(prompt), target) for prompt, target in saved["pairs"]]
        pairs, stats = build_injection_set(
            ctx.task,
            examples,
            teacher_generate=teacher_generate if config.teacher_rationales and round_index == 1 else None,
            rationale_samples=config.rationale_samples,
            domain_notes=config.domain_notes,
            fits=fits_budget,
        )
        if round_index == 1:
            _record_injection_data(metrics, stats)
            note_teacher_usage(ctx, metrics)
            injection = {k: v for k, v in metrics.written().items() if k.startswith("injection_")}
            ctx.run.put("injection_data", {"pairs": pairs, "metrics": injection})
            _release_teacher(ctx, "Knowledge Injection: the training data is built")
        return pairs

    return build_pairs


def _release_teacher(ctx: JobContext, why: str) -> None:
    """Free the teacher's weights before the student trains (:func:`~stratos_train.parallel.release`); nothing
    to free for an external teacher."""
    if ctx.teacher is None:
        return
    model = ctx.teacher.model
    if is_released(model):
        return
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    release(model)
    logger.info("teacher released (%.1f MB freed): %s", size / 2**20, why)


@dataclass(frozen=True)
class Trained:
    """What training leaves for evaluation and export, on rank 0.

    Attributes:
        model: the trained student, whole and unsharded (LoRA-wrapped when ``lora``).
        teacher: the teacher for the held-out KL after training, whole; ``None`` when it was released (Knowledge
            Injection, or the plan's ``topk_cache``).
    """

    model: Any
    teacher: Any | None


def _lora_wrapper(config: TrainConfig) -> Callable[[Any], Any] | None:
    """The LoRA wrapping of :func:`_trainable_student`, to rebuild a gathered model with the same keys."""
    if not config.lora:
        return None
    return lambda model: apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets)


def _trainable_student(config: TrainConfig, student: LoadedModel) -> Any:
    """The student in train mode, wrapped with LoRA adapters when ``lora``."""
    model = student.model
    model.train()
    if config.lora:
        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets)
    return model


def train_phase(ctx: JobContext, decision: ModeDecision, metrics: JobMetrics) -> Trained | None:
    """Build the training set for the mode and train; returns the trained student (and the teacher still held)
    on rank 0, ``None`` on the other ranks.

    Alignment: reference targets, loss = divergence to the teacher (live, or its top-k cache) + alpha x CE.
    Injection: verified targets, loss = CE; with ``injection_rounds`` > 1 on a task with strata, the closed
    loop (:func:`train_in_rounds`). Fills ``injection_*`` and the training figures (``train_*``,
    ``final_loss``, ``loss_history``, ...).
    """
    saved = broadcast_from_main(ctx.run.get("train") if is_main() else None)
    if saved is not None:
        return _trained_by_earlier_job(ctx, decision, saved, metrics)
    trained = _train_mode(ctx, decision, metrics)
    if trained is not None:  # rank 0: keep the trained weights and figures for a job that comes after
        ctx.run.train_dir.mkdir(parents=True, exist_ok=True)
        save_model_weights(trained.model, ctx.run.train_dir / FINAL_WEIGHTS)
        ctx.run.put("train", {"metrics": metrics.written()})
    return trained


#: The trained student's weights (whole, unsharded; LoRA-wrapped when ``lora``) in the run's train folder.
FINAL_WEIGHTS = "final.safetensors"


def _train_mode(ctx: JobContext, decision: ModeDecision, metrics: JobMetrics) -> Trained | None:
    config, task = ctx.config, ctx.task
    if decision.mode == "injection":
        build_pairs = _injection_pairs(ctx, metrics)
        if config.injection_rounds > 1 and task.strata():
            model = _trainable_student(config, ctx.student)
            model = train_in_rounds(config, ctx.run, ctx.task, ctx.student, model, build_pairs, metrics)
            return Trained(model, None) if is_main() else None
        return _train(ctx, build_pairs(ctx.train_examples, 1), None, decision=decision, metrics=metrics)
    if ctx.external is not None:  # the mode rule allows it only for an endpoint with checked top-k
        return _train(ctx, *_endpoint_topk_targets(ctx, metrics), decision=decision, metrics=metrics)
    if ctx.teacher is None:
        raise ModeError(f"alignment needs a teacher loaded in the job; {config.teacher} is external")
    pairs = [(task.prompt(ex), task.target(ex)) for ex in ctx.train_examples]
    return _train(ctx, pairs, ctx.teacher.model, decision=decision, metrics=metrics)


#: The endpoint teacher's answers to the training prompts with their top-k: (replies used, one per pair, None
#: for a reference row; what the targets were made of).
EndpointTopK = tuple[list[TeacherReply | None], SequenceKDStats]


def _endpoint_topk_targets(ctx: JobContext, metrics: JobMetrics) -> tuple[list[Pair], None, EndpointTopK]:
    """Top-k KD from an endpoint (:mod:`stratos_train.sequence_kd`): the teacher answers every training prompt
    (rank 0 calls, through the reply cache; every rank gets the replies), and its verified answers become the
    targets. The answers are kept in the run's state (phase ``topk_targets``), so a job resumed after an
    interruption reads them without asking the teacher again, not even its cache. Returns ``_train``'s
    ``(pairs, teacher, endpoint_topk)``."""
    external = ctx.external
    if external is None:
        raise ValueError("top-k targets need an external teacher")
    saved = ctx.run.get(TOPK_TARGETS)  # every rank reads it: each trains on the same pairs
    if saved is not None:
        replies = [TeacherReply.from_json(reply) for reply in saved["replies"]]
        seconds = float(saved["seconds"])
    else:
        prompts = [ctx.task.prompt(ex) for ex in ctx.train_examples]
        start = time.perf_counter()
        replies = on_main(lambda: external.generate(prompts, max_new_tokens=ctx.config.max_new_tokens))
        seconds = round(time.perf_counter() - start, 2)
        note_teacher_usage(ctx, metrics)
        ctx.run.put(TOPK_TARGETS, {"replies": [reply.to_json() for reply in replies], "seconds": seconds})
    pairs, used, stats = teacher_targets(ctx.task, ctx.train_examples, replies)
    metrics.teacher_topk_cache_seconds = seconds
    logger.info(
        "top-k targets from %s: %d teacher answers verified, %d reference targets (%s)",
        ctx.config.teacher,
        stats.rows_teacher,
        stats.rows_reference,
        ", ".join(f"{n} {why}" for why, n in sorted((stats.reference_reasons or {}).items())) or "none",
    )
    return pairs, None, (used, stats)


#: The run-state phase that keeps an endpoint teacher's answers to the training prompts (top-k KD).
TOPK_TARGETS = "topk_targets"


def _trained_by_earlier_job(
    ctx: JobContext, decision: ModeDecision, saved: Mapping[str, Any], metrics: JobMetrics
) -> Trained | None:
    """An earlier job of the run finished training: its weights and figures, no step taken (rank 0; ``None``
    on the other ranks, which have nothing left to do). The teacher is kept only where training would have
    kept it (alignment with a live teacher), for the held-out KL after training."""
    if not is_main():
        return None
    config = ctx.config
    model = _trainable_student(config, ctx.student)
    load_model_weights(model, ctx.run.train_dir / FINAL_WEIGHTS)
    restore_metrics(metrics, saved["metrics"])
    placement = config.parallelism.placement_for(decision.mode) if config.parallelism is not None else None
    if decision.mode == "injection" or placement == "topk_cache" or config.teacher_topk:
        _release_teacher(ctx, "training was finished by an earlier job of this run")
    logger.info("training: finished by an earlier job of this run (%d steps); weights reloaded", metrics.train_steps)
    return Trained(model, _held_teacher(ctx))


def _teacher_cache_k(config: TrainConfig, placement: str | None) -> int:
    """Top-k of the teacher cache: ``teacher_topk``, else :data:`~stratos_train.parallel.PLAN_TOPK_DEFAULT`
    when the plan places the teacher as ``topk_cache``, else 0 (live teacher).

    Raises:
        ParallelismError: the plan asks for the cache (``auto`` chose alignment under a plan made for
            injection) with a divergence the cache cannot serve.
    """
    k = config.teacher_topk or (PLAN_TOPK_DEFAULT if placement == "topk_cache" else 0)
    if k and not config.topk_divergence:
        raise ParallelismError(
            f"the plan places the teacher as topk_cache, which needs divergence 'forward_kl', not "
            f"{config.divergence!r}: re-plan for alignment with this divergence"
        )
    return k


def _train(
    ctx: JobContext,
    pairs: list[Pair],
    teacher: Any,
    endpoint_topk: EndpointTopK | None = None,
    *,
    decision: ModeDecision,
    metrics: JobMetrics,
) -> Trained | None:
    """One training run over ``pairs`` (``teacher``: the live teacher for alignment, else ``None``;
    ``endpoint_topk``: an endpoint teacher's top-k per pair, for top-k KD), placed as the ``parallelism`` plan
    says. Returns the whole trained model on rank 0, ``None`` on the other ranks."""
    config = ctx.config
    plan = config.parallelism
    placement = plan.placement_for(decision.mode) if plan is not None else None
    fsdp = plan is not None and plan.strategy == "fsdp_full_shard"
    encoded, enc_stats = encode_all(ctx.student.tokenizer, pairs, config.max_seq_len)
    if not encoded:
        raise ValueError(
            f"no training example kept a completion token within max_seq_len={config.max_seq_len} "
            f"({enc_stats.dropped_no_completion} dropped)"
        )
    metrics.train_examples = len(encoded)
    metrics.train_rows_dropped_no_completion = enc_stats.dropped_no_completion
    metrics.train_rows_truncated = enc_stats.truncated
    metrics.train_tokens = enc_stats.completion_tokens
    metrics.train_total_tokens = enc_stats.total_tokens

    model = _trainable_student(config, ctx.student)
    world = world_size()
    total_steps = config.total_steps(len(encoded), world)
    save_steps = config.derived_save_steps(total_steps)
    tokens_per_step = enc_stats.total_tokens / max(1, len(encoded)) * config.per_device_batch_size * config.grad_accum
    logger.info(
        "training %s: %d rows, %d steps (~%.0f tokens/step), checkpoint every %d steps",
        decision.mode,
        len(encoded),
        total_steps,
        tokens_per_step * world,
        save_steps,
    )
    if plan is not None:
        logger.info("parallelism: %s", describe(plan, placement))
    checkpoints = ctx.run.train_dir
    args = config.training_arguments(
        str(checkpoints),
        max_steps=total_steps,
        save_steps=save_steps,
        layer_classes=decoder_layer_classes(model) if fsdp else (),
    )
    kd = config.kd_loss_config(cross_entropy_only=decision.mode == "injection")
    collator = CompletionCollator(ctx.student.tokenizer.pad_token_id)
    topk_cache = None
    vocab = ctx.shared_vocab
    k = _teacher_cache_k(config, placement) if teacher is not None else 0
    if endpoint_topk is not None:
        used, kd_stats = endpoint_topk
        vocab = ctx.student.real_vocab_size  # the token check found the endpoint's ids are the student's
        topk_cache = endpoint_topk_cache(encoded, used, config.teacher_topk, kd_stats, vocab)
        _record_endpoint_topk(metrics, kd_stats)
    elif k:
        # Every rank caches the whole training set (each needs the rows its sampler gives it).
        topk_cache = _teacher_topk_cache(ctx, teacher, encoded, collator, k, metrics)
        teacher = None  # the cache replaces the live teacher
        if placement == "topk_cache":
            _release_teacher(ctx, f"the plan's topk_cache: top-{k} logits cached")
    elif teacher is not None and fsdp:
        shard_frozen(teacher)  # colocated under FSDP: sharded like the student, forward on every rank
    trainer, _ = _build_trainer(model, args, encoded, collator, kd, teacher, vocab, config, topk_cache)
    last = broadcast_from_main(_resume_point(checkpoints, total_steps))  # every rank resumes from the same step
    carried = read_carried(last, rank())
    trainer.loss_sum_carried = carried.loss_sum
    clock = CheckpointClock(config.checkpoint_interval_minutes * 60, carried, trainer.run_loss_sum)
    trainer.add_callback(clock)
    if last:
        logger.info("resuming from checkpoint %s (step %d of %d)", last, checkpoint_step(last), total_steps)
    output = trainer.train(resume_from_checkpoint=last)
    if stop_requested():
        raise JobStopped(
            f"received SIGTERM: stopped at step {output.global_step} of {total_steps} after saving a checkpoint; "
            "a re-created job of this run resumes from it"
        )
    # Whole-run figures: the loss sum and training seconds carried by the checkpoint, plus this job's.
    metrics.final_loss = mean_over_ranks(trainer.run_loss_sum()) / max(1, output.global_step)
    metrics.train_steps = output.global_step
    metrics.train_seconds = round(clock.run_train_seconds(), 2)
    metrics.resumed_from = last or ""
    metrics.train_resumed_at_step = checkpoint_step(last)
    metrics.loss_history = _logged_losses(trainer.state.log_history)
    if fsdp:
        return _gather_on_main(ctx, trainer.model, teacher)
    if not is_main():
        return None
    return Trained(trainer.model, _held_teacher(ctx))


def _record_endpoint_topk(metrics: JobMetrics, stats: SequenceKDStats) -> None:
    """The ``teacher_topk_*`` figures of top-k KD from an endpoint."""
    metrics.teacher_topk_rows_teacher = stats.rows_teacher
    metrics.teacher_topk_rows_reference = stats.rows_reference
    metrics.teacher_topk_reference_reasons = dict(stats.reference_reasons or {})
    metrics.teacher_topk_positions = stats.positions
    metrics.teacher_topk_positions_teacher = stats.positions_teacher
    tail = stats.tail_mass
    metrics.teacher_topk_tail_mass = None if tail is None else round(tail, 6)


def _held_teacher(ctx: JobContext) -> Any | None:
    """The loaded teacher's model while its weights are held (``None`` once released, or when external)."""
    if ctx.teacher is None or is_released(ctx.teacher.model):
        return None
    return ctx.teacher.model


def _resume_point(checkpoints: Any, total_steps: int) -> str | None:
    """The checkpoint to resume from: the latest one, unless it is already at the end of training (a job
    stopped between the last save and keeping the result), whose resume transformers would run past the end;
    then the one before it, else a fresh start. Checked on rank 0 (the others follow its choice)."""
    if not is_main() or not checkpoints.exists():
        return None
    found = sorted(
        (p for p in checkpoints.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]),
    )
    usable = [str(p) for p in found if checkpoint_step(str(p)) < total_steps]
    return usable[-1] if usable else None


def _logged_losses(log_history: Sequence[Mapping[str, Any]]) -> list[LossPoint]:
    """The run's logged losses from transformers' log history (restored from the checkpoint on a resume, so it
    covers the earlier jobs too)."""
    return [LossPoint(step=int(h["step"]), train_loss=float(h["loss"])) for h in log_history if "loss" in h]


def _teacher_topk_cache(
    ctx: JobContext,
    teacher: Any,
    encoded: Sequence[EncodedExample],
    collator: CompletionCollator,
    k: int,
    metrics: JobMetrics,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The teacher's top-``k`` logits per completion token of every training row: from the run's folder when an
    earlier job built it, else built here (and kept there by rank 0)."""
    path = ctx.run.train_dir / f"teacher-top{k}.pt"
    if path.exists():
        cache: list[tuple[torch.Tensor, torch.Tensor]] = torch.load(path, weights_only=True)
        if len(cache) == len(encoded):
            ctx.run.note_reused("teacher_topk_cache")
            return cache
    start = time.perf_counter()
    cache = build_teacher_topk_cache(teacher, ListDataset(list(encoded)), collator, k, ctx.shared_vocab)
    metrics.teacher_topk_cache_seconds = round(time.perf_counter() - start, 2)
    if is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        os.replace(tmp, path)
        ctx.run.count_computed("teacher_topk_cache")
    return cache


def _gather_on_main(ctx: JobContext, student: Any, sharded_teacher: Any) -> Trained | None:
    """After FSDP training: gather the student's (and a sharded teacher's) FULL state dict to rank 0 and
    rebuild them unsharded there, for evaluation and the one export. A collective; ``None`` off rank 0."""
    student_state = full_state_dict(student)
    teacher_state = full_state_dict(sharded_teacher) if sharded_teacher is not None else None
    if not is_main():
        return None
    model = rebuild_unsharded(student, student_state, _lora_wrapper(ctx.config))
    teacher = None
    if sharded_teacher is not None and teacher_state is not None:
        teacher = rebuild_unsharded(sharded_teacher, teacher_state)
    else:
        teacher = _held_teacher(ctx)
    logger.info("gathered the FSDP-trained student (%d tensors) on rank 0", len(student_state))
    return Trained(model, teacher)


def evaluate_after_phase(ctx: JobContext, decision: ModeDecision, trained: Trained, metrics: JobMetrics) -> Any:
    """Merge the trained student for deployment and score it on the held-out set(s); returns the merged model
    (fp32). Fills ``student_after_*``, ``eval_sets.*.student_after``, the student/teacher ratios,
    ``heldout_kl_after`` (when the teacher is still held), ``eval_examples`` and ``samples``."""
    config, task, examples, student = ctx.config, ctx.task, ctx.eval_examples, ctx.student
    final = merge_for_deployment(trained.model, dtype=torch.float32)
    final.eval()
    saved = ctx.run.get("evaluate_after")
    if saved is not None:
        restore_metrics(metrics, saved["metrics"])
        return final
    deployed = LoadedModel(final, student.tokenizer, config.student, student.real_vocab_size, student.tokenizer_family)
    after = _eval(deployed, task, examples, config, "student after", [])
    metrics.student_after_accuracy = after.accuracy
    metrics.student_after_partial = after.partial
    metrics.student_after_stop_rate = after.stopped
    metrics.student_after_answered = after.answered
    metrics.student_after_eval_seconds = round(after.seconds, 2)
    metrics.student_after_strata = strata_table(task, examples, after.exact)
    if metrics.teacher_accuracy is not None and examples:
        ratios = student_over_teacher(after.accuracy, metrics.teacher_accuracy, len(examples))
        metrics.teacher_accuracy_upper95 = ratios["teacher_accuracy_upper95"]
        metrics.student_over_teacher = ratios["student_over_teacher"]
        metrics.student_over_teacher_upper95 = ratios["student_over_teacher_upper95"]
    for name, extra in ctx.extra_sets.items():
        row = _eval_row(_eval(deployed, task, extra, config, f"student after {name}", []), task, extra)
        metrics.eval_set(name).student_after = row
    kl_vocab = ctx.kl_vocab(decision)
    if kl_vocab is not None and trained.teacher is None:
        logger.info("no held-out KL after training: the teacher was released before training (topk_cache)")
    if kl_vocab is not None and trained.teacher is not None:
        metrics.heldout_kl_after = heldout_kl(
            trained.teacher,
            final,
            student.tokenizer,
            ctx.heldout_pairs(),
            vocab_size=kl_vocab,
            max_seq_len=config.max_seq_len,
        )
    metrics.eval_examples = len(examples)
    metrics.samples = [
        Sample(problem=ex.problem, reference=_answer_text(ex.answer), completion=text)
        for ex, text in list(zip(examples, after.completions, strict=True))[:SAMPLES_KEPT]
    ]
    ctx.run.put("evaluate_after", {"metrics": metrics.written()})
    return final


def export_phase(ctx: JobContext, decision: ModeDecision, final: Any, metrics: JobMetrics) -> None:
    """Save the deployable model (bf16) with its card at the model-dir root; write metrics.json and the
    config to ``output/data``; print the final ``[stratos-metrics]`` line. Fills ``job_seconds``."""
    config, task = ctx.config, ctx.task
    metrics.job_seconds = round(time.perf_counter() - ctx.started, 2)
    metrics.run_jobs = ctx.run.job_index
    metrics.phases_reused = list(ctx.run.reused or [])
    metrics.phase_runs = {k: int(v) for k, v in ctx.run.counters().get("computed", {}).items()}
    train_examples = metrics.train_examples if metrics.train_examples is not None else 0
    card = {
        "title": f"Stratos student for {task.name}",
        "teacher": config.teacher_id or config.teacher,
        "student": config.student_id or config.student,
        "teacher_source": config.teacher,
        "student_source": config.student,
        "task": task.name,
        "mode": decision.mode,
        "mode_reason": decision.reason,
        "train_examples": train_examples,
        "eval_examples": len(ctx.eval_examples),
        "metrics": metrics.scalars(),
        "data_note": f"{train_examples} {task.name} examples",
    }
    save_deployable(
        final.to(torch.bfloat16),
        ctx.student.tokenizer,
        ctx.env.model_dir,
        max_new_tokens=config.max_new_tokens,
        card=card,
    )
    note_teacher_usage(ctx, metrics)  # the run's usage as it stands at the end (a re-run adds nothing)
    env = ctx.env
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    env.metrics_path.write_text(json.dumps(metrics.written(), indent=2, default=str), encoding="utf-8")
    (env.output_data_dir / "config.json").write_text(json.dumps(config.model_dump(), indent=2), encoding="utf-8")
    print(f"{MetricLinesCallback.PREFIX} {json.dumps(metrics.scalars())}", flush=True)


def run_job(config: TrainConfig, env: SageMakerEnv) -> JobMetrics:
    """Run the job's phases (module docstring); return the metrics also written to ``output/data/metrics.json``
    (on the main process; other ranks return theirs after training, and write nothing).

    Raises:
        Any exception; :func:`stratos_train.entrypoint.main` turns it into ``output/failure``.
    """
    init_process_group()  # several ranks: they agree on the mode and the checkpoint before training
    ctx, metrics = load_phase(config, env, started=time.perf_counter())
    decision = probe_phase(ctx, metrics)
    evaluate_before_phase(ctx, decision, metrics)
    trained = train_phase(ctx, decision, metrics)
    if trained is None:  # not rank 0: rank 0 alone evaluates and exports
        return metrics
    final = evaluate_after_phase(ctx, decision, trained, metrics)
    export_phase(ctx, decision, final, metrics)
    return metrics


def _answer_text(answer: Answer) -> str | list[str]:
    return list(answer) if isinstance(answer, tuple) else answer


def _shared_tiny_tokenizer(config: TrainConfig, teacher: LoadedModel | None) -> Any:
    """Tiny test models: the student reuses the teacher's freshly trained tokenizer (same vocabulary)."""
    if teacher is None:
        return None
    if config.student.split("@", 1)[0].startswith("tiny:") and config.teacher.startswith("tiny:"):
        return teacher.tokenizer
    return None
