"""The served model: a causal LM loaded from a deployed model directory, and greedy/sampled generation.

torch and transformers are imported inside :class:`ServingModel` only, so the registry and the client never
load them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast, runtime_checkable

from stratos_cli.local.serving.request import GenerationRequest, RequestError

DEFAULT_MAX_NEW_TOKENS = 128
"""``max_new_tokens`` when neither the request nor the model's generation_config.json sets one, tokens."""


class TextGenerator(Protocol):
    """What the server serves: :class:`ServingModel`, or a stand-in with the same ``generate`` (tests, benchmarks).

    ``generate`` may be called from several worker threads at once; an implementation that is not re-entrant
    serialises itself (as :class:`ServingModel` does with its lock).
    """

    def generate(self, request: GenerationRequest) -> str:
        """The completion text of ``request``; raises :class:`RequestError` for a request it cannot serve."""
        ...


TokenInfo = tuple[int, str, float]
"""One generated token as TGI lists it: ``(id, text, natural-log probability)``."""


@dataclass(frozen=True)
class Generation:
    """One completion with what TGI's ``details`` report of it.

    Attributes:
        text: the completion text (as :meth:`ServingModel.generate` returns it).
        generated_tokens: decoding steps run, tokens (the stop token included, as TGI counts).
        finish_reason: ``eos_token`` (a stop id ended it), ``stop_sequence`` (a stop string cut it) or ``length``
            (``max_new_tokens`` reached), TGI's names.
        prefill: the prompt's tokens as ``(id, text)``, chat template included.
        tokens: the generated tokens, stop token included (``generated_tokens`` of them), each ``(id, text,
            logprob)``: the log-softmax of the model's logits at that step; empty when not computed.
        top_tokens: per generated token, the ``top_n_tokens`` likeliest ``(id, text, logprob)``, likeliest first;
            empty when not asked.
        special_ids: ids of the tokenizer's special tokens (TGI's ``special`` flag).
    """

    text: str
    generated_tokens: int
    finish_reason: Literal["eos_token", "stop_sequence", "length"]
    prefill: tuple[tuple[int, str], ...]
    tokens: tuple[TokenInfo, ...] = ()
    top_tokens: tuple[tuple[TokenInfo, ...], ...] = ()
    special_ids: frozenset[int] = frozenset()

    def details(self, seed: int | None, with_prefill: bool) -> dict[str, Any]:
        """TGI's ``details`` object: ``finish_reason``, ``generated_tokens``, ``seed``, ``prefill``
        (``[{"id", "text", "logprob": null}]``, listed with ``with_prefill``: TGI's ``decoder_input_details``;
        prompt log-probabilities are not computed), ``tokens`` (``[{"id", "text", "logprob", "special"}]``) and,
        when asked, ``top_tokens`` (per generated token, a list of the same objects)."""
        prefill = [{"id": i, "text": t, "logprob": None} for i, t in self.prefill] if with_prefill else []
        out: dict[str, Any] = {
            "finish_reason": self.finish_reason,
            "generated_tokens": self.generated_tokens,
            "seed": seed,
            "prefill": prefill,
            "tokens": [self._token(t) for t in self.tokens],
        }
        if self.top_tokens:
            out["top_tokens"] = [[self._token(t) for t in step] for step in self.top_tokens]
        return out

    def _token(self, token: TokenInfo) -> dict[str, Any]:
        token_id, text, logprob = token
        return {"id": token_id, "text": text, "logprob": logprob, "special": token_id in self.special_ids}


@runtime_checkable
class DetailedGenerator(TextGenerator, Protocol):
    """A :class:`TextGenerator` that also reports TGI's ``details`` (:class:`ServingModel`)."""

    def generate_details(self, request: GenerationRequest) -> Generation:
        """``request``'s completion with its token counts; raises :class:`RequestError` like ``generate``."""
        ...


class ServingModel:
    """A causal LM loaded from a deployed model directory (config, weights, tokenizer, generation config at
    the root, as :func:`stratos_train.export.save_deployable` writes it).

    Weights are loaded as float32 (bf16 on disk is upcast: CPU inference). Stop ids are every id in
    ``generation_config.eos_token_id`` (a list), falling back to the tokenizer's EOS.

    Attributes:
        model_dir: the directory.
        model, tokenizer: the transformers objects.
        stop_ids: token ids that end a completion.
        context_tokens: the model's maximum sequence length (prompt + completion), tokens.
        default_max_new_tokens: from generation_config.json, else :data:`DEFAULT_MAX_NEW_TOKENS`.
    """

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        """Load the model.

        Args:
            model_dir: a deployed model directory.
            threads: torch intra-op threads (0 = torch's default).

        Raises:
            OSError, ValueError: transformers could not load the directory.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        # cast: transformers' stubs type eval() as untyped; the model is an opaque transformers object here.
        self.model: Any = cast(Any, AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
        self.model.eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not ids and self.tokenizer.eos_token_id is not None:
            ids = [self.tokenizer.eos_token_id]
        self.stop_ids: list[int] = sorted(set(ids))
        self.pad_id: int = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.context_tokens: int = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.default_max_new_tokens: int = int(gen.max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self.special_ids: frozenset[int] = frozenset(int(i) for i in self.tokenizer.all_special_ids)
        self._lock = threading.Lock()

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text: the tokenizer's chat template with the assistant turn opened; without a template,
        the message contents one per line.

        Raises:
            RequestError: (``messages``) the chat template rejected the turns (e.g. roles not alternating).
        """
        if not getattr(self.tokenizer, "chat_template", None):
            return "\n".join(m["content"] for m in messages) + "\n"
        try:
            text: str = self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja2 TemplateError or a template's own raise_exception
            raise RequestError("messages", f"the model's chat template rejected them: {exc}") from exc
        return text

    def generate(self, request: GenerationRequest) -> str:
        """The completion text (special tokens skipped; cut at the first stop id and the first stop string).

        Raises:
            RequestError: (``inputs``) prompt + ``max_new_tokens`` exceed the model's context.
        """
        return self.generate_details(request).text

    def generate_details(self, request: GenerationRequest) -> Generation:
        """:meth:`generate`'s completion with its token counts and finish reason (:class:`Generation`).

        Raises:
            RequestError: (``inputs``) prompt + ``max_new_tokens`` exceed the model's context.
        """
        import torch

        prompt = self.render(request.messages)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        max_new = request.max_new_tokens or self.default_max_new_tokens
        if self.context_tokens and len(ids) + max_new > self.context_tokens:
            raise RequestError(
                "inputs",
                f"prompt is {len(ids)} tokens; with max_new_tokens {max_new} it exceeds the model's context of "
                f"{self.context_tokens} tokens",
            )
        options: dict[str, Any] = {"do_sample": request.do_sample}
        if request.do_sample:
            for name in ("temperature", "top_p", "top_k"):
                if getattr(request, name) is not None:
                    options[name] = getattr(request, name)
        input_ids = torch.tensor([ids], dtype=torch.long)
        with self._lock, torch.no_grad():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new,
                eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id,
                return_dict_in_generate=True,
                output_logits=request.details,
                **options,
            )
        new = out.sequences[0, len(ids) :].tolist()
        cut = next((k for k, t in enumerate(new) if t in self.stop_ids), len(new))
        reason: Literal["eos_token", "stop_sequence", "length"] = "eos_token" if cut < len(new) else "length"
        text: str = self.tokenizer.decode(new[:cut], skip_special_tokens=True)
        # Decoding steps run: up to and including the stop id (the batch of one stops there), as TGI counts them.
        steps = min(len(new), cut + 1)
        found = [(text.find(marker), marker) for marker in request.stop if marker in text]
        if found:
            text, reason = text[: min(position for position, _ in found)], "stop_sequence"
            # TGI stops at the step that completes a stop string: the fewest tokens whose text holds one.
            steps = next(
                (
                    n
                    for n in range(1, cut + 1)
                    if any(m in self.tokenizer.decode(new[:n], skip_special_tokens=True) for _, m in found)
                ),
                steps,
            )
        prefill: tuple[tuple[int, str], ...] = ()
        if request.decoder_input_details:
            prefill = tuple((int(i), str(self.tokenizer.decode([i]))) for i in ids)
        tokens: tuple[TokenInfo, ...] = ()
        top: tuple[tuple[TokenInfo, ...], ...] = ()
        if request.details:
            # Raw logits per step (before any sampling warper), as log-probabilities: (steps, vocab).
            logprobs = torch.log_softmax(torch.stack(out.logits[:steps])[:, 0].float(), dim=-1)
            chosen = logprobs.gather(-1, torch.tensor(new[:steps]).unsqueeze(-1)).squeeze(-1).tolist()
            tokens = tuple((int(t), self._text(t), float(lp)) for t, lp in zip(new[:steps], chosen, strict=True))
            if request.top_n_tokens:
                values, indices = logprobs.topk(request.top_n_tokens, dim=-1)
                top = tuple(
                    tuple((int(i), self._text(int(i)), float(v)) for v, i in zip(vs, ix, strict=True))
                    for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
                )
        return Generation(
            text=text,
            generated_tokens=steps,
            finish_reason=reason,
            prefill=prefill,
            tokens=tokens,
            top_tokens=top,
            special_ids=self.special_ids,
        )

    def _text(self, token_id: int) -> str:
        """One token's text as TGI reports it (the token decoded alone, special tokens written out)."""
        return str(self.tokenizer.decode([token_id]))
