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
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from stratos_train.config import KDLossConfig
from stratos_train.losses import IGNORE_INDEX, chunked_kd_loss, chunked_topk_kd_loss
from stratos_train.parallel import enable_fsdp_on_cpu, is_sharded

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
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=[len(row.input_ids) for row in dataset],
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
