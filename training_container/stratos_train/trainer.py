"""The training loop: Hugging Face ``Trainer`` with the loss replaced, nothing else re-implemented.

:class:`DistillationTrainer` overrides two hooks:

* ``compute_loss`` — completion-only loss through :func:`~stratos_train.losses.chunked_kd_loss`: Knowledge
  Alignment (teacher present: KD divergence + alpha x CE) or plain fine-tuning (no teacher: CE), both
  computed only at kept positions, chunked, without full-vocabulary logits;
* ``_get_train_sampler`` — sequential order when ``shuffle`` is off (reproducible trajectories, DDP tests);
  with ``train_sampling_strategy="group_by_length"`` transformers' ``LengthGroupedSampler`` fed with our rows'
  lengths (it can only infer them from dict rows);
* ``create_accelerator_and_postprocess`` — FSDP asked for in ``TrainingArguments`` runs on a CPU too
  (:func:`~stratos_train.parallel.enable_fsdp_on_cpu`; accelerate alone would train DDP there).

Under FSDP2 the loss still projects with the head weight outside the model's forward: the root unit (embeddings,
final norm, head) stays gathered from its forward until its backward, so the weight read after
:func:`final_hidden` is the whole matrix and its gradient is reduce-scattered with the root's.

Normalisation: the loss of a micro-batch is its token SUM divided by the number of kept tokens in the whole
optimiser step (``num_items_in_batch``, counted by ``Trainer`` over all accumulation micro-batches and, with
``average_tokens_across_devices``, over all processes). So (batch 8, accumulation 1) and (batch 1,
accumulation 8) give the same update, and every token weighs the same however the rows are split.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from stratos_train.config import KDLossConfig
from stratos_train.losses import IGNORE_INDEX, chunked_kd_loss, chunked_topk_kd_loss
from stratos_train.parallel import enable_fsdp_on_cpu, is_sharded
from stratos_train.resume import Carried, agree, request_stop, set_training_active, stop_requested, write_carried

logger = logging.getLogger(__name__)


def unwrap_model(model: Any) -> Any:
    """The ``*ForCausalLM`` module under DDP and PEFT wrappers (FSDP2 wraps nothing: it shards in place)."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel
        model = model.get_base_model()
    return model


def decoder_and_head(model: Any) -> tuple[Any, torch.Tensor]:
    """(decoder returning final-normed hidden states, output projection weight ``(vocab, hidden)``)."""
    base = unwrap_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings().weight


def final_hidden(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(batch, seq, hidden)`` final hidden states (after the last norm), with logits for 1 position only.

    The call goes through ``model``'s own forward (never an unwrapped submodule): under DDP that forward
    prepares the gradient reducer, and bypassing it makes the all-reduce silently wrong.
    ``logits_to_keep=1`` keeps the output projection to one position; the loss projects kept positions itself.
    """
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs.get("attention_mask"),
        position_ids=inputs.get("position_ids"),
        output_hidden_states=True,
        logits_to_keep=1,
        use_cache=False,
    )
    hidden: torch.Tensor = out.hidden_states[-1]
    return hidden


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' ``LengthGroupedSampler`` whose order depends only on ``seed`` and the epoch (the trainer
    calls ``set_epoch``), not on the global RNG: a job resumed mid-run draws the same order for every epoch as
    the uninterrupted run did (the global RNG is restored only after the resumed epoch's order is drawn)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class DistillationTrainer(Trainer):
    """``Trainer`` whose loss is the completion-only distillation (or fine-tuning) loss.

    Args:
        teacher: the teacher model (frozen, eval mode) for Knowledge Alignment; ``None`` for fine-tuning.
        kd_config: loss hyperparameters.
        shared_vocab_size: real vocabulary shared by teacher and student (logits sliced to it).
        shuffle: shuffle the training set (else sequential order).
    """

    loss_is_scaled_for_ga = True  # compute_loss already divides by the step's kept-token count

    def __init__(
        self,
        *args: Any,
        teacher: Any = None,
        kd_config: KDLossConfig | None = None,
        shared_vocab_size: int | None = None,
        shuffle: bool = True,
        teacher_topk_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Make Trainer count kept tokens over the whole accumulation window and pass them in.
        self.model_accepts_loss_kwargs = True
        self.kd_config = kd_config or KDLossConfig(alpha=1.0)
        if teacher is None and teacher_topk_cache is None and self.kd_config.alpha < 1.0:
            self.kd_config = KDLossConfig(alpha=1.0, chunk_size=self.kd_config.chunk_size)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
            if not is_sharded(teacher):  # a sharded teacher already sits on its devices
                teacher.to(self.args.device)
        self.shared_vocab_size = shared_vocab_size
        self.shuffle = shuffle
        self.teacher_topk_cache = teacher_topk_cache
        self.kept_tokens_seen = 0
        #: This rank's sum of optimiser-step losses since the start of the RUN (a resumed job starts from the
        #: sum its checkpoint recorded: :mod:`stratos_train.resume`); float64 so the order of additions, not
        #: the precision, is all that a resume could change.
        self.loss_sum_carried = 0.0
        self._loss_sum: torch.Tensor | None = None

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """transformers' step, plus this rank's running loss sum (each micro-batch's loss is already its share
        of the step's mean: see the module docstring)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._loss_sum += loss.detach().to(torch.float64)
        return loss

    def run_loss_sum(self) -> float:
        """This rank's loss sum over the run so far (carried from the checkpoint + this job's steps)."""
        return self.loss_sum_carried + (float(self._loss_sum.item()) if self._loss_sum is not None else 0.0)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if enable_fsdp_on_cpu(self.accelerator, self.args.fsdp_plugin_args):
            self.is_fsdp_enabled = True

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        if not self.shuffle:
            return SequentialSampler(dataset)
        if self.args.train_sampling_strategy == "group_by_length" and not _is_mapping_dataset(dataset):
            # transformers infers lengths only from dict rows; ours are EncodedExample, so pass them in.
            return EpochSeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=[len(row.input_ids) for row in dataset],
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        labels = inputs["labels"]
        hidden = final_hidden(model, inputs)  # (batch, seq, hidden)
        target = labels[:, 1:]  # position i predicts token i + 1
        keep = target != IGNORE_INDEX  # (batch, seq-1) bool
        kept_hidden = hidden[:, :-1][keep]  # (kept, hidden)
        kept_labels = target[keep]  # (kept,)
        _, weight = decoder_and_head(model)
        if self.teacher_topk_cache is not None and self.kd_config.alpha < 1.0:
            rows = inputs["example_index"].tolist()
            values = torch.cat([self.teacher_topk_cache[i][0] for i in rows]).to(kept_hidden.device)
            indices = torch.cat([self.teacher_topk_cache[i][1] for i in rows]).to(kept_hidden.device)
            loss_sum = chunked_topk_kd_loss(
                kept_hidden, weight, kept_labels, self.kd_config, values, indices, self.shared_vocab_size
            )
            return self._normalise(loss_sum, kept_labels, num_items_in_batch, return_outputs)
        teacher_hidden = teacher_weight = None
        if self.teacher is not None and self.kd_config.alpha < 1.0:
            with torch.no_grad():
                t_hidden = final_hidden(self.teacher, inputs)
                teacher_hidden = t_hidden[:, :-1][keep]
                teacher_weight = decoder_and_head(self.teacher)[1]
        loss_sum = chunked_kd_loss(
            kept_hidden,
            weight,
            kept_labels,
            self.kd_config,
            teacher_hidden=teacher_hidden,
            teacher_weight=teacher_weight,
            vocab_size=self.shared_vocab_size,
        )
        return self._normalise(loss_sum, kept_labels, num_items_in_batch, return_outputs)

    def _normalise(
        self,
        loss_sum: torch.Tensor,
        kept_labels: torch.Tensor,
        num_items_in_batch: torch.Tensor | int | None,
        return_outputs: bool,
    ) -> Any:
        """Token-sum -> per-token loss of the whole optimiser step (see the module docstring)."""
        count = num_items_in_batch if num_items_in_batch is not None else kept_labels.numel()
        if torch.is_tensor(count):
            count = count.to(loss_sum.device)
        loss = loss_sum / (count if float(count) > 0 else 1)  # an all-prompt batch gives 0, never NaN
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.args.world_size  # DDP averages gradients; count is the global total
        self.kept_tokens_seen += int(kept_labels.numel())
        return (loss, {"loss": loss}) if return_outputs else loss


@torch.no_grad()
def build_teacher_topk_cache(
    teacher: Any, dataset: Any, collator: Any, k: int, vocab_size: int | None, batch_size: int = 8
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Offline teacher cache: for every training example, the teacher's top-``k`` logits at each completion
    position, ``(values (kept_i, k) fp32, indices (kept_i, k) int64)``, in dataset order.

    One teacher pass over the data instead of one per epoch; memory ``examples x kept x k x 12 B``
    (2,000 x 100 x 20 x 12 B = 48 MB). Bias: see :func:`~stratos_train.losses.topk_kd_loss_per_token`.
    """
    teacher.eval()
    weight = decoder_and_head(teacher)[1]
    vocab = vocab_size or weight.shape[0]
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        hidden = final_hidden(teacher, batch)[:, :-1]
        keep = batch["labels"][:, 1:] != IGNORE_INDEX
        for row in range(hidden.shape[0]):
            logits = hidden[row][keep[row]].float() @ weight[:vocab].float().T  # (kept_row, vocab)
            values, indices = logits.topk(k, dim=-1)
            cache.append((values, indices))
    return cache


class MetricLinesCallback(TrainerCallback):
    """Prints one ``[stratos-metrics] {json}`` line per log event (CloudWatch / MetricDefinitions can parse it)
    and a human progress line (loss, tokens/s, ETA) on stderr.

    MetricDefinitions regexes, for the estimator: ``"train_loss": ([0-9.eE+-]+)``, ``"tokens_per_s":
    ([0-9.eE+-]+)``.
    """

    PREFIX = "[stratos-metrics]"

    def __init__(self, trainer_ref: list[DistillationTrainer] | None = None, stream: Any = None) -> None:
        self.trainer_ref = trainer_ref if trainer_ref is not None else []
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.history: list[dict[str, float]] = []

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.start = time.perf_counter()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        elapsed = time.perf_counter() - self.start
        tokens = self.trainer_ref[0].kept_tokens_seen if self.trainer_ref else 0
        world = max(1, args.world_size)
        record = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
            "elapsed_s": round(elapsed, 2),
            "completion_tokens_per_s": round(tokens * world / elapsed, 2) if elapsed > 0 else 0.0,
        }
        summary = "train_runtime" in logs  # the end-of-run log: its train_loss is the mean over the run
        for key, value in logs.items():
            if isinstance(value, int | float) and math.isfinite(value):
                if key == "loss":
                    key = "train_loss"
                elif summary and key == "train_loss":
                    key = "train_loss_mean"
                record[key] = value
        self.history.append(record)
        print(f"{self.PREFIX} {json.dumps(record)}", flush=True)
        if state.max_steps and "train_loss" in record:
            done = state.global_step / state.max_steps
            eta = elapsed * (1 - done) / done if done > 0 else float("nan")
            loss = record.get("train_loss", float("nan"))
            print(
                f"step {state.global_step}/{state.max_steps} loss {loss:.4f} "
                f"{record['completion_tokens_per_s']:.0f} tok/s ETA {eta:.0f}s",
                file=self.stream,
                flush=True,
            )


def _is_mapping_dataset(dataset: Any) -> bool:
    return len(dataset) > 0 and isinstance(dataset[0], dict)


class CheckpointClock(TrainerCallback):
    """Checkpoints by wall clock, and a clean stop on SIGTERM, with every rank agreeing on both
    (:mod:`stratos_train.resume`).

    After each optimiser step the ranks take the max of (interval elapsed on this rank, SIGTERM seen on this
    rank); either makes every rank save at this step, and SIGTERM also ends training after that save. On every
    save each rank writes what the run carries past transformers' own state (its loss sum, the run's training
    seconds) into the checkpoint folder, so a resumed run reports the whole run, not its resumed part.

    Args:
        interval_s: training seconds between checkpoints; 0 = only the trainer's step-based ones.
        carried: what the run had reached at the checkpoint this job resumed from (zeros for a fresh start).
        loss_sum: returns this rank's loss sum over the run so far (:meth:`DistillationTrainer.run_loss_sum`).
    """

    def __init__(self, interval_s: float, carried: Carried, loss_sum: Any) -> None:
        self.interval_s = interval_s
        self.carried = carried
        self.loss_sum = loss_sum
        self.started = time.perf_counter()
        self.last_save = time.monotonic()
        self.saves = 0

    def run_train_seconds(self) -> float:
        """Training seconds of the run: carried + this job's so far."""
        return self.carried.train_seconds + (time.perf_counter() - self.started)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        set_training_active(True)
        self.started = time.perf_counter()
        self.last_save = time.monotonic()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        set_training_active(False)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        due = self.interval_s > 0 and time.monotonic() - self.last_save >= self.interval_s
        due_any, stop_any = agree([int(due), int(stop_requested())])
        if due_any or stop_any:
            control.should_save = True
        if stop_any:
            request_stop()  # every rank stops, whichever saw the signal
            control.should_training_stop = True
            logger.warning("stopping at step %d: SIGTERM received; saving a checkpoint first", state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.last_save = time.monotonic()
        self.saves += 1
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            write_carried(folder, args.process_index, Carried(float(self.loss_sum()), self.run_train_seconds()))
