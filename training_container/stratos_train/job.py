"""One distillation training job, end to end, inside the SageMaker contract.

Order of work (each step logged; every figure ends up in ``output/data/metrics.json``):

1. build the task's training and evaluation examples (generated or from the ``data``/``train``/``eval``
   channels);
2. load teacher and student; check tokenizer compatibility;
3. decide the mode (auto: probe the teacher on training problems; see :mod:`stratos_train.modes`);
4. evaluate the teacher and the student before training on the held-out set;
5. build the training set (alignment: reference targets + teacher logits; injection: verified data);
6. train (LoRA or full), checkpointing to the checkpoint dir and resuming from its latest checkpoint;
7. evaluate the student after; save the deployable model at the model-dir root with its card.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PrinterCallback, get_scheduler
from transformers.trainer_utils import get_last_checkpoint

from stratos_train.config import TrainConfig
from stratos_train.data import CompletionCollator, ListDataset, encode_all
from stratos_train.env import SageMakerEnv
from stratos_train.evaluate import EvalResult, evaluate, generate, heldout_kl
from stratos_train.export import save_deployable
from stratos_train.lora import apply_lora, merge_for_deployment
from stratos_train.losses import KDLossConfig
from stratos_train.models import LoadedModel, load_model
from stratos_train.modes import ModeDecision, build_injection_set, decide_mode
from stratos_train.rounds import (
    Patience,
    RoundReport,
    mean_accuracy,
    next_weights,
    probe_scores,
    round_sizes,
    uniform_weights,
)
from stratos_train.tasks import get_task
from stratos_train.tasks.base import Example, Task, pick_few_shot
from stratos_train.tasks.scoring import wilson_interval
from stratos_train.trainer import (
    DistillationTrainer,
    MetricLinesCallback,
    build_teacher_topk_cache,
    training_arguments,
)

logger = logging.getLogger(__name__)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _is_main() -> bool:
    return _rank() == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


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


def _score_fn(task: Task, examples: list[Example]) -> Any:
    def score(completion: str, index: int) -> tuple[float, float]:
        result = task.score(examples[index], completion)
        return float(result.correct), float(result.credit)

    return score


def _eval(
    loaded: LoadedModel, task: Task, examples: list[Example], config: TrainConfig, label: str, shots: list[Example]
) -> EvalResult:
    """Greedy evaluation; ``answered`` (in ``extra``) is the fraction with a parseable final answer."""
    prompts = [task.prompt(ex, shots) for ex in examples]
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


def strata_table(task: Task, examples: Sequence[Example], exact: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Per-stratum ``{"correct", "n", "accuracy"}`` of scored examples; empty for a task without strata."""
    scores = probe_scores([task.stratum(ex) for ex in examples], [e >= 1.0 for e in exact], task.strata())
    return {k: {"correct": v.correct, "n": v.n, "accuracy": round(v.accuracy, 4)} for k, v in scores.items()}


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


def _eval_row(result: EvalResult, task: Task, examples: Sequence[Example]) -> dict[str, Any]:
    """One evaluation set's figures for metrics.json."""
    return {
        "accuracy": result.accuracy,
        "partial": result.partial,
        "answered": result.answered,
        "examples": len(examples),
        "correct": int(sum(result.exact)),
        "seconds": round(result.seconds, 2),
        "strata": strata_table(task, examples, result.exact),
    }


def _build_trainer(
    model: Any,
    args: Any,
    encoded: Sequence[Any],
    collator: CompletionCollator,
    kd: KDLossConfig,
    teacher: Any,
    shared_vocab: int | None,
    config: TrainConfig,
    topk_cache: Any = None,
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


def _round_args(config: TrainConfig, output_dir: str, max_steps: int) -> Any:
    """TrainingArguments of one closed-loop round (checkpoints at its end only; the loop owns the schedule)."""
    return training_arguments(
        output_dir,
        per_device_batch_size=config.per_device_batch_size,
        grad_accum=config.grad_accum,
        learning_rate=config.learning_rate,
        epochs=1.0,
        max_steps=max_steps,
        warmup_ratio=0.0,
        weight_decay=config.weight_decay,
        lr_scheduler=config.lr_scheduler,
        bf16=config.bf16,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_steps=max_steps,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if config.shuffle and config.group_by_length else "random",
    )


def train_in_rounds(
    config: TrainConfig,
    env: SageMakerEnv,
    task: Task,
    student: LoadedModel,
    model: Any,
    build_pairs: Any,
    metrics: dict[str, Any],
) -> Any:
    """Knowledge Injection as a closed loop (:mod:`stratos_train.rounds`); returns the trained model.

    ``build_pairs(examples, round)`` turns a round's examples into (prompt, target) pairs. Fills
    ``metrics`` with ``injection_rounds`` (one :class:`RoundReport` each) and the usual training figures,
    summed over rounds.
    """
    strata = task.strata()
    sizes = round_sizes(config.train_size, config.injection_rounds)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = config.per_device_batch_size * config.grad_accum * world
    steps = [max(1, -(-n // per_step)) for n in sizes]
    collator = CompletionCollator(student.tokenizer.pad_token_id)
    kd = KDLossConfig(alpha=1.0, chunk_size=config.chunk_size)
    probe = task.stratified_examples(
        "train", config.probe_per_stratum * len(strata), config.seed + 7_919, uniform_weights(strata)
    )
    seen: set[str] = {ex.id for ex in probe}
    weights = uniform_weights(strata)
    stop = Patience(config.round_patience, config.round_min_gain)
    optimizers: tuple[Any, Any] = (None, None)
    reports: list[RoundReport] = []
    history: list[dict[str, Any]] = []
    totals = {"examples": 0, "tokens": 0, "total_tokens": 0, "steps": 0, "seconds": 0.0}
    logger.info("closed loop: up to %d rounds of %s examples, probe %d per stratum", len(sizes), sizes, len(probe))
    for index, (size, max_steps) in enumerate(zip(sizes, steps, strict=True), start=1):
        started = time.perf_counter()
        drawn = task.stratified_examples("train", size + size // 10 + 8, config.seed + 1_000 * index, weights)
        examples = [ex for ex in drawn if ex.id not in seen][:size]
        seen.update(ex.id for ex in examples)
        encoded, enc_stats = encode_all(student.tokenizer, build_pairs(examples, index), config.max_seq_len)
        args = _round_args(config, str(env.checkpoint_dir / f"round-{index}"), max_steps)
        trainer, lines = _build_trainer(model, args, encoded, collator, kd, None, None, config, None, optimizers)
        if optimizers[0] is None:
            trainer.create_optimizer()
            optimizer = trainer.optimizer
            schedule = get_scheduler(
                config.lr_scheduler,
                optimizer,
                num_warmup_steps=round(config.warmup_ratio * sum(steps)),
                num_training_steps=sum(steps),
            )
            trainer.lr_scheduler = schedule
            optimizers = (optimizer, schedule)
        output = trainer.train()
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
        reports.append(report)
        history += [
            {"step": totals["steps"] + h["step"], "train_loss": h["train_loss"], "round": index}
            for h in lines.history
            if "train_loss" in h
        ]
        totals["examples"] += len(encoded)
        totals["tokens"] += enc_stats.completion_tokens
        totals["total_tokens"] += enc_stats.total_tokens
        totals["steps"] += output.global_step
        totals["seconds"] += output.metrics.get("train_runtime", 0.0)
        metrics["final_loss"] = output.training_loss
        logger.info(
            "round %d: %d examples, probe accuracy %.3f (%s)",
            index,
            len(encoded),
            report.probe_accuracy,
            ", ".join(f"{k} {v.accuracy:.2f}" for k, v in scores.items()),
        )
        if stop.update(report.probe_accuracy) or index == len(sizes):
            break
        weights = next_weights(scores, config.round_weight_floor)
    metrics.update(
        injection_rounds=[r.as_metrics() for r in reports],
        injection_rounds_run=len(reports),
        train_examples=totals["examples"],
        train_tokens=totals["tokens"],
        train_total_tokens=totals["total_tokens"],
        train_steps=totals["steps"],
        train_seconds=round(float(totals["seconds"]), 2),
        resumed_from="",
        loss_history=history,
    )
    return model


def run_job(config: TrainConfig, env: SageMakerEnv) -> dict[str, Any]:
    """Run the job; return the metrics dict also written to ``output/data/metrics.json``.

    Raises:
        Any exception; :func:`stratos_train.entrypoint.main` turns it into ``output/failure``.
    """
    started = time.perf_counter()
    env.prepare()
    seed_everything(config.seed)
    torch.set_num_threads(max(1, int(os.environ.get("STRATOS_THREADS", os.cpu_count() or 1))))
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

    channels = {name: path for name in ("teacher", "student") if (path := env.channel(name)) is not None}
    corpus = [task.target(ex) + " " + task.prompt(ex)[-1]["content"] for ex in train_examples[:200]]
    teacher = load_model(config.teacher, channels, corpus=corpus)
    student = load_model(config.student, channels, corpus=corpus, tokenizer=_shared_tiny_tokenizer(config, teacher))
    compatible = teacher.tokenizer_family == student.tokenizer_family
    shared_vocab = min(teacher.real_vocab_size, student.real_vocab_size) if compatible else None
    logger.info(
        "teacher %s (%.1fM params), student %s (%.1fM params), tokenizers %s",
        config.teacher,
        sum(p.numel() for p in teacher.model.parameters()) / 1e6,
        config.student,
        sum(p.numel() for p in student.model.parameters()) / 1e6,
        "shared" if compatible else "differ",
    )

    shots = pick_few_shot(train_examples, config.few_shot, config.seed) if config.few_shot else []
    metrics: dict[str, Any] = {"task": task.name, "teacher": config.teacher, "student": config.student}
    # The sources say how the models were loaded (channel:student@layers=15); the catalog ids say which they are.
    metrics |= {k: v for k, v in (("teacher_id", config.teacher_id), ("student_id", config.student_id)) if v}

    def probe() -> tuple[float, float, float, int]:
        sample = train_examples[: config.probe_size]
        result = _eval(teacher, task, sample, config, "teacher probe", shots)
        complexity = sum(task.complexity(ex) for ex in sample) / max(1, len(sample))
        return result.accuracy, result.partial, complexity, len(sample)

    decision: ModeDecision = decide_mode(
        config.mode,
        compatible=compatible,
        threshold=config.coverage_threshold,
        probe=probe if _is_main() else lambda: (0.0, 0.0, 0.0, 0),
        complexity_unit=task.complexity_unit,
    )
    logger.info("mode %s: %s", decision.mode, decision.reason)

    if _is_main() and config.evaluate_teacher:
        teacher_eval = _eval(teacher, task, eval_examples, config, "teacher", shots)
        metrics["teacher_accuracy"] = teacher_eval.accuracy
        metrics["teacher_partial"] = teacher_eval.partial
        metrics["teacher_answered"] = teacher_eval.answered
        metrics["teacher_eval_seconds"] = round(teacher_eval.seconds, 2)
        metrics["teacher_strata"] = strata_table(task, eval_examples, teacher_eval.exact)
        for name, examples in extra_sets.items() if config.extra_eval_teacher else ():
            row = _eval_row(_eval(teacher, task, examples, config, f"teacher {name}", shots), task, examples)
            metrics.setdefault("eval_sets", {}).setdefault(name, {})["teacher"] = row
    if _is_main() and config.evaluate_before:
        before = _eval(student, task, eval_examples, config, "student before", [])
        metrics["student_before_accuracy"] = before.accuracy
        metrics["student_before_partial"] = before.partial
        metrics["student_before_answered"] = before.answered
        metrics["student_before_eval_seconds"] = round(before.seconds, 2)
    heldout_pairs = [(task.prompt(ex), task.target(ex)) for ex in eval_examples[:64]]
    measure_kl = shared_vocab is not None and decision.mode == "alignment"  # KL to the teacher is what alignment moves
    if _is_main() and measure_kl:
        metrics["heldout_kl_before"] = heldout_kl(
            teacher.model,
            student.model,
            student.tokenizer,
            heldout_pairs,
            vocab_size=shared_vocab,
            max_seq_len=config.max_seq_len,
        )
    _barrier()

    if decision.mode == "injection":

        def teacher_generate(prompts: list[list[dict[str, str]]]) -> list[str]:
            texts, _ = generate(
                teacher.model,
                teacher.tokenizer,
                prompts,
                max_new_tokens=config.max_new_tokens * 2,
                batch_size=config.eval_batch_size,
                bf16=config.bf16,
                stop_after_answer=config.stop_after_answer,
            )
            return texts

        def build_pairs(examples: list[Example], round_index: int) -> list[tuple[list[dict[str, str]], str]]:
            # Teacher rationales are asked once (first round), within the rationale_samples budget.
            pairs, inj_stats = build_injection_set(
                task,
                examples,
                teacher_generate=teacher_generate if config.teacher_rationales and round_index == 1 else None,
                rationale_samples=config.rationale_samples,
                domain_notes=config.domain_notes,
            )
            if round_index == 1:
                metrics.update(inj_stats.as_metrics())
                metrics["injection_rejection_reasons"] = inj_stats.rejection_reasons
            return pairs

        pairs = [] if config.injection_rounds > 1 and task.strata() else build_pairs(train_examples, 1)
        kd = KDLossConfig(alpha=1.0, chunk_size=config.chunk_size)
        teacher_for_training = None
    else:
        pairs = [(task.prompt(ex), task.target(ex)) for ex in train_examples]
        kd = KDLossConfig(
            divergence=config.divergence,
            beta=config.beta,
            temperature=config.temperature,
            alpha=config.alpha,
            chunk_size=config.chunk_size,
        )
        teacher_for_training = teacher.model

    if decision.mode == "injection" and config.injection_rounds > 1 and task.strata():
        model = student.model
        model.train()
        if config.lora:
            model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets)
        model = train_in_rounds(config, env, task, student, model, build_pairs, metrics)
        return _finish(
            config,
            env,
            task,
            student,
            teacher,
            model,
            eval_examples,
            extra_sets,
            metrics,
            started,
            decision,
            heldout_pairs,
            measure_kl,
            shared_vocab,
        )
    encoded, enc_stats = encode_all(student.tokenizer, pairs, config.max_seq_len)
    if not encoded:
        raise ValueError(
            f"no training example kept a completion token within max_seq_len={config.max_seq_len} "
            f"({enc_stats.dropped_no_completion} dropped)"
        )
    metrics.update(
        train_examples=len(encoded),
        train_rows_dropped_no_completion=enc_stats.dropped_no_completion,
        train_rows_truncated=enc_stats.truncated,
        train_tokens=enc_stats.completion_tokens,
        train_total_tokens=enc_stats.total_tokens,
    )

    model = student.model
    model.train()
    if config.lora:
        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, -(-len(encoded) // (config.per_device_batch_size * config.grad_accum * world)))
    total_steps = config.max_steps if config.max_steps > 0 else max(1, round(steps_per_epoch * config.epochs))
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
    args = training_arguments(
        str(env.checkpoint_dir),
        per_device_batch_size=config.per_device_batch_size,
        grad_accum=config.grad_accum,
        learning_rate=config.learning_rate,
        epochs=config.epochs,
        max_steps=total_steps,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler=config.lr_scheduler,
        bf16=config.bf16,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_steps=save_steps,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if config.shuffle and config.group_by_length else "random",
    )
    topk_cache = None
    collator = CompletionCollator(student.tokenizer.pad_token_id)
    if teacher_for_training is not None and config.teacher_topk > 0:
        cache_start = time.perf_counter()
        topk_cache = build_teacher_topk_cache(
            teacher_for_training, ListDataset(encoded), collator, config.teacher_topk, shared_vocab
        )
        metrics["teacher_topk_cache_seconds"] = round(time.perf_counter() - cache_start, 2)
        teacher_for_training = None  # the cache replaces the live teacher
    trainer, metric_lines = _build_trainer(
        model, args, encoded, collator, kd, teacher_for_training, shared_vocab, config, topk_cache
    )
    last = get_last_checkpoint(str(env.checkpoint_dir)) if env.checkpoint_dir.exists() else None
    if last:
        logger.info("resuming from checkpoint %s", last)
    train_start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - train_start
    metrics.update(
        final_loss=output.training_loss,
        train_steps=output.global_step,
        train_seconds=round(train_seconds, 2),
        resumed_from=last or "",
        loss_history=[
            {"step": h["step"], "train_loss": h["train_loss"]} for h in metric_lines.history if "train_loss" in h
        ],
    )
    if not _is_main():
        return metrics
    return _finish(
        config,
        env,
        task,
        student,
        teacher,
        trainer.model,
        eval_examples,
        extra_sets,
        metrics,
        started,
        decision,
        heldout_pairs,
        measure_kl,
        shared_vocab,
    )


def _finish(
    config: TrainConfig,
    env: SageMakerEnv,
    task: Task,
    student: LoadedModel,
    teacher: LoadedModel,
    trained: Any,
    eval_examples: list[Example],
    extra_sets: dict[str, list[Example]],
    metrics: dict[str, Any],
    started: float,
    decision: ModeDecision,
    heldout_pairs: list[Any],
    measure_kl: bool,
    shared_vocab: int | None,
) -> dict[str, Any]:
    """Evaluate the trained student, save the deployable model and write metrics.json (main process)."""
    final = merge_for_deployment(trained, dtype=torch.float32)
    final.eval()
    deployed = LoadedModel(final, student.tokenizer, config.student, student.real_vocab_size, student.tokenizer_family)
    after = _eval(deployed, task, eval_examples, config, "student after", [])
    metrics["student_after_accuracy"] = after.accuracy
    metrics["student_after_partial"] = after.partial
    metrics["student_after_stop_rate"] = after.stopped
    metrics["student_after_answered"] = after.answered
    metrics["student_after_eval_seconds"] = round(after.seconds, 2)
    metrics["student_after_strata"] = strata_table(task, eval_examples, after.exact)
    if isinstance(metrics.get("teacher_accuracy"), float) and eval_examples:
        metrics.update(student_over_teacher(after.accuracy, metrics["teacher_accuracy"], len(eval_examples)))
    for name, examples in extra_sets.items():
        row = _eval_row(_eval(deployed, task, examples, config, f"student after {name}", []), task, examples)
        metrics.setdefault("eval_sets", {}).setdefault(name, {})["student_after"] = row
    if measure_kl and shared_vocab is not None:
        metrics["heldout_kl_after"] = heldout_kl(
            teacher.model,
            final,
            student.tokenizer,
            heldout_pairs,
            vocab_size=shared_vocab,
            max_seq_len=config.max_seq_len,
        )
    metrics["eval_examples"] = len(eval_examples)
    metrics["mode"] = decision.mode
    metrics["mode_reason"] = decision.reason
    metrics["mode_evidence"] = decision.evidence()
    metrics["samples"] = [
        {"problem": ex.problem, "reference": _answer_text(ex.answer), "completion": text}
        for ex, text in list(zip(eval_examples, after.completions, strict=True))[:5]
    ]
    metrics["job_seconds"] = round(time.perf_counter() - started, 2)
    card = {
        "title": f"Stratos student for {task.name}",
        "teacher": config.teacher_id or config.teacher,
        "student": config.student_id or config.student,
        "teacher_source": config.teacher,
        "student_source": config.student,
        "task": task.name,
        "mode": decision.mode,
        "mode_reason": decision.reason,
        "train_examples": metrics.get("train_examples", 0),
        "eval_examples": len(eval_examples),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
        "data_note": f"{metrics.get('train_examples', 0)} {task.name} examples",
    }
    save_deployable(
        final.to(torch.bfloat16), student.tokenizer, env.model_dir, max_new_tokens=config.max_new_tokens, card=card
    )
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    env.metrics_path.write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
    (env.output_data_dir / "config.json").write_text(json.dumps(config.model_dump(), indent=2), encoding="utf-8")
    summary = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    print(f"{MetricLinesCallback.PREFIX} {json.dumps(summary)}", flush=True)
    return metrics


def _answer_text(answer: Any) -> Any:
    return list(answer) if isinstance(answer, tuple) else answer


def _shared_tiny_tokenizer(config: TrainConfig, teacher: LoadedModel) -> Any:
    """Tiny test models: the student reuses the teacher's freshly trained tokenizer (same vocabulary)."""
    if config.student.split("@", 1)[0].startswith("tiny:") and config.teacher.startswith("tiny:"):
        return teacher.tokenizer
    return None
