"""Distillation losses: token-level KL divergences and generalised JSD, plain and chunked.

Notation: ``p_t = softmax(z_t / T)`` (teacher), ``p_s = softmax(z_s / T)`` (student), temperature ``T``.

* forward KL  ``KL(p_t || p_s) = sum_v p_t (log p_t - log p_s)`` — mass-covering (Hinton et al. 2015,
  "Distilling the Knowledge in a Neural Network"; the ``T^2`` factor keeps gradient magnitudes comparable
  across temperatures, ibid. section 2).
* reverse KL  ``KL(p_s || p_t)`` — mode-seeking (MiniLLM, Gu et al. 2024).
* generalised JSD with ``beta`` in (0, 1) (GKD, Agarwal et al. 2024, eq. 1):
  ``M = beta p_t + (1 - beta) p_s``; ``JSD_beta = beta KL(p_t || M) + (1 - beta) KL(p_s || M)``.
  ``beta = 0`` and ``beta = 1`` are defined as forward and reverse KL, the limits of ``JSD_beta / beta`` and
  ``JSD_beta / (1 - beta)`` (the same convention as TRL's ``generalized_jsd_loss``).

The distillation objective per completion token is ``alpha * CE(z_s, y) + (1 - alpha) * T^2 * D(p_t, p_s)``
with ``CE`` the ordinary next-token cross-entropy at temperature 1.

Memory: :func:`chunked_kd_loss` never materialises ``(tokens, vocab)`` logits for all kept tokens. It runs the
student's and teacher's output projection chunk by chunk over kept positions, upcasts each chunk to fp32,
computes the loss and its exact gradient with respect to the chunk's logits in closed form, and
back-propagates that into the hidden states and projection weight at once (a fused linear + loss, as in
Liger-Kernel's fused linear cross-entropy). Peak extra memory is ``O(chunk_size * vocab)``; FLOPs equal an
ordinary forward + backward through the projection.

Gradients used (``s = log p_s``, ``t = log p_t``, ``m = log M``; derivation in tests/unit/test_losses.py):
``dKL(t||s)/dz_s = (p_s - p_t) / T``; ``dKL(s||t)/dz_s = p_s ((s - t) - KL(s||t)) / T``;
``dJSD/dz_s = (g - p_s sum(g)) / T`` with ``g = (1 - beta) p_s (s - m)``; ``dCE/dz_s = softmax(z_s) - onehot(y)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from stratos_train.config import Divergence, KDLossConfig

__all__ = [
    "IGNORE_INDEX",
    "Divergence",
    "KDLossConfig",
    "chunked_kd_loss",
    "chunked_topk_kd_loss",
    "divergence_per_token",
    "kd_loss_reference",
    "topk_kd_loss_per_token",
]

IGNORE_INDEX = -100


def divergence_per_token(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Divergence between teacher and student next-token distributions, per position, NOT scaled by T^2.

    Args:
        student_logits: ``(..., vocab)`` any float dtype; computed in fp32.
        teacher_logits: ``(..., vocab)`` same shape.
        divergence: ``forward_kl`` = KL(p_t || p_s), ``reverse_kl`` = KL(p_s || p_t), ``jsd`` = JSD_beta.
        beta: for ``jsd``; 0 and 1 give forward and reverse KL (see module docstring).
        temperature: T > 0.

    Returns:
        ``(...)`` fp32, nats, >= 0 up to rounding.

    Raises:
        ValueError: on mismatched shapes or an unknown divergence.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    cfg = KDLossConfig(divergence=divergence, beta=beta, temperature=temperature)
    kind, beta = cfg.effective
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "forward_kl":
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log1p(-beta)]), dim=0)
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def kd_loss_reference(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    config: KDLossConfig,
) -> torch.Tensor:
    """Straightforward (full-logits) distillation loss: the reference :func:`chunked_kd_loss` must equal.

    Args:
        student_logits: ``(tokens, vocab)``; teacher_logits: ``(tokens, vocab)``.
        labels: ``(tokens,)`` int64 next-token ids; ``-100`` marks positions that do not count.

    Returns:
        Scalar fp32: SUM over counted tokens of ``alpha * CE + (1 - alpha) * T^2 * D`` (the caller divides by
        the number of counted tokens of the whole optimiser step).
    """
    keep = labels != IGNORE_INDEX
    s, t, y = student_logits[keep].float(), teacher_logits[keep].float(), labels[keep]
    total = s.new_zeros(())
    if config.alpha < 1.0:
        kind, beta = config.effective
        div = divergence_per_token(s, t, kind, beta, config.temperature)
        total = total + (1 - config.alpha) * config.temperature**2 * div.sum()
    if config.alpha > 0.0:
        total = total + config.alpha * F.cross_entropy(s, y, reduction="sum")
    return total


def _chunk_loss_and_grad(
    zs: torch.Tensor,
    zt: torch.Tensor | None,
    y: torch.Tensor,
    config: KDLossConfig,
    topk: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (summed over rows) and d loss / d zs for one chunk; all fp32. ``zs``, ``zt``: (rows, vocab);
    ``topk``: cached teacher (values, indices), each (rows, k), instead of ``zt`` (forward KL only)."""
    T = config.temperature
    loss = zs.new_zeros(())
    grad = torch.zeros_like(zs)
    if config.alpha < 1.0 and topk is not None:
        values, indices = topk
        t = F.log_softmax(values.float() / T, dim=-1)  # renormalised over the cached top-k (see topk bias note)
        pt = t.exp()
        s = F.log_softmax(zs / T, dim=-1)
        scale = (1 - config.alpha) * T * T
        loss = loss + scale * (pt * (t - s.gather(-1, indices))).sum()
        grad += (scale / T) * s.exp()
        grad.scatter_add_(-1, indices, -(scale / T) * pt)
    elif config.alpha < 1.0 and zt is not None:
        kind, beta = config.effective
        s = F.log_softmax(zs / T, dim=-1)
        t = F.log_softmax(zt / T, dim=-1)
        ps = s.exp()
        scale = (1 - config.alpha) * T * T
        if kind == "forward_kl":
            pt = t.exp()
            loss = loss + scale * (pt * (t - s)).sum()
            grad += (scale / T) * (ps - pt)
        elif kind == "reverse_kl":
            diff = s - t
            kl = (ps * diff).sum(-1, keepdim=True)
            loss = loss + scale * kl.sum()
            grad += (scale / T) * ps * (diff - kl)
        else:
            pt = t.exp()
            # log of the mixture from the probabilities (one pass instead of a stacked logsumexp); the clamp only
            # matters where both probabilities underflow, and there both terms are multiplied by 0.
            m = (beta * pt + (1 - beta) * ps).clamp_min_(torch.finfo(zs.dtype).tiny).log_()
            s_minus_m = s - m
            loss = loss + scale * (beta * (pt * (t - m)).sum() + (1 - beta) * (ps * s_minus_m).sum())
            g = s_minus_m.mul_(ps).mul_(1 - beta)
            grad += (scale / T) * (g - ps * g.sum(-1, keepdim=True))
    if config.alpha > 0.0:
        logp = F.log_softmax(zs, dim=-1)
        loss = loss + config.alpha * F.nll_loss(logp, y, reduction="sum")
        ce_grad = logp.exp()
        ce_grad[torch.arange(len(y), device=zs.device), y] -= 1.0
        grad += config.alpha * ce_grad
    return loss, grad


class _ChunkedKD(torch.autograd.Function):
    """Fused output projection + distillation loss, chunked over kept positions (see module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        teacher_hidden: torch.Tensor | None,
        teacher_weight: torch.Tensor | None,
        labels: torch.Tensor,
        vocab_size: int,
        config: KDLossConfig,
        topk_values: torch.Tensor | None = None,
        topk_indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        grad_hidden = torch.zeros_like(hidden, dtype=torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        w = weight[:vocab_size].float()
        tw = teacher_weight[:vocab_size].float() if teacher_weight is not None else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], config.chunk_size):
            h = hidden[start : start + config.chunk_size].float()  # (chunk, hidden)
            zs = h @ w.T  # (chunk, vocab) fp32
            zt = None
            if tw is not None and teacher_hidden is not None:
                zt = teacher_hidden[start : start + config.chunk_size].float() @ tw.T
            rows = slice(start, start + config.chunk_size)
            topk = None
            if topk_values is not None and topk_indices is not None:
                topk = (topk_values[rows], topk_indices[rows])
            loss, dz = _chunk_loss_and_grad(zs, zt, labels[rows], config, topk)
            total += loss
            grad_hidden[start : start + config.chunk_size] = dz @ w
            if grad_weight is not None:
                grad_weight[:vocab_size] += dz.T @ h
            del zs, zt, dz
        ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else torch.empty(0))
        ctx.has_weight_grad = grad_weight is not None
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        gh = (grad_hidden * grad_output).to(h_dtype)
        gw = (grad_weight * grad_output).to(w_dtype) if ctx.has_weight_grad else None
        return gh, gw, None, None, None, None, None, None, None


def chunked_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    config: KDLossConfig,
    teacher_hidden: torch.Tensor | None = None,
    teacher_weight: torch.Tensor | None = None,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Distillation loss over kept positions without materialising full logits.

    Args:
        hidden: ``(kept, hidden)`` student final hidden states at the positions that predict a completion
            token (already selected; any float dtype). Gradients flow into it.
        weight: ``(vocab_student, hidden)`` student output projection (``lm_head.weight``; tied embeddings
            are fine). Gradients flow into it when it requires grad.
        labels: ``(kept,)`` int64 target ids, all ``< vocab_size``.
        config: divergence, beta, temperature, alpha, chunk size.
        teacher_hidden: ``(kept, hidden_teacher)`` teacher hidden states at the same positions (no grad);
            ``None`` only when ``config.alpha == 1`` (pure cross-entropy).
        teacher_weight: ``(vocab_teacher, hidden_teacher)`` teacher output projection.
        vocab_size: shared REAL vocabulary; logits are sliced to ``[:vocab_size]`` on both sides, so padded
            rows (Qwen2.5-7B pads to 152064, 0.5B to 151936; real 151665) never enter the softmax.
            Default: the smaller of the two projections.

    Returns:
        Scalar fp32: the SUM over kept tokens (divide by the step's kept-token count).

    Raises:
        ValueError: on shape mismatches, a missing teacher with alpha < 1, or labels outside the vocabulary.
    """
    if hidden.dim() != 2 or labels.dim() != 1 or hidden.shape[0] != labels.shape[0]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} must be (kept, H), (kept,)")
    if config.alpha < 1.0 and (teacher_hidden is None or teacher_weight is None):
        raise ValueError("a teacher is required unless alpha == 1 (pure cross-entropy)")
    if teacher_hidden is not None and teacher_hidden.shape[0] != hidden.shape[0]:
        raise ValueError(f"teacher_hidden has {teacher_hidden.shape[0]} rows, student {hidden.shape[0]}")
    sizes = [weight.shape[0]] + ([teacher_weight.shape[0]] if teacher_weight is not None else [])
    vocab = min(sizes) if vocab_size is None else vocab_size
    if vocab > min(sizes):
        raise ValueError(f"vocab_size {vocab} exceeds a projection ({sizes})")
    if labels.numel() and int(labels.max()) >= vocab:
        raise ValueError(f"label id {int(labels.max())} >= shared vocabulary {vocab}")
    if hidden.shape[0] == 0:
        # No completion tokens: a zero that still depends on the parameters, never 0/0 = NaN.
        return (hidden.sum() * 0.0 + weight.sum() * 0.0).float()
    th = teacher_hidden.detach() if teacher_hidden is not None else None
    tw = teacher_weight.detach() if teacher_weight is not None else None
    # torch leaves Function.apply unannotated (the subclass's forward fixes what it returns)
    out: torch.Tensor = _ChunkedKD.apply(hidden, weight, th, tw, labels, vocab, config)  # type: ignore[no-untyped-call]
    return out


def chunked_topk_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    config: KDLossConfig,
    topk_values: torch.Tensor,
    topk_indices: torch.Tensor,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Forward-KL distillation against an OFFLINE teacher cache of top-k logits, chunked and fused like
    :func:`chunked_kd_loss` (see :func:`topk_kd_loss_per_token` for the bias of dropping the tail).

    Args:
        hidden: ``(kept, hidden)`` student hidden states at kept positions; weight: ``(vocab, hidden)``.
        labels: ``(kept,)`` int64 targets (for the ``alpha`` cross-entropy term).
        topk_values: ``(kept, k)`` teacher logits; topk_indices: ``(kept, k)`` int64 token ids < vocab_size.

    Returns:
        Scalar fp32 SUM over kept tokens.

    Raises:
        ValueError: a divergence other than forward KL (the cache has no tail mass, so reverse KL and JSD
            are undefined), or mismatched shapes.
    """
    if config.effective[0] != "forward_kl" and config.alpha < 1.0:
        raise ValueError("a top-k teacher cache supports only the forward KL divergence")
    if topk_values.shape != topk_indices.shape or topk_values.shape[0] != hidden.shape[0]:
        raise ValueError(f"top-k cache {tuple(topk_values.shape)} does not match {hidden.shape[0]} kept positions")
    vocab = weight.shape[0] if vocab_size is None else vocab_size
    if hidden.shape[0] == 0:
        return (hidden.sum() * 0.0 + weight.sum() * 0.0).float()
    out: torch.Tensor = _ChunkedKD.apply(  # type: ignore[no-untyped-call]  # as in chunked_kd_loss
        hidden, weight, None, None, labels, vocab, config, topk_values.detach(), topk_indices.long()
    )
    return out


def topk_kd_loss_per_token(
    student_logits: torch.Tensor,
    topk_values: torch.Tensor,
    topk_indices: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Forward KL against an offline teacher cache that kept only the top-k logits per position.

    The teacher distribution is renormalised over its top-k tokens and the student's log-probabilities are
    taken from its full softmax at those indices. BIAS: the teacher's tail mass (1 - sum of top-k
    probabilities) is dropped, so the target is sharper than the real teacher; with k = 20 on instruction-tuned
    models the dropped mass is typically a few percent. The estimate is exact when the tail mass is 0.

    Args:
        student_logits: ``(tokens, vocab)``.
        topk_values: ``(tokens, k)`` teacher logits; topk_indices: ``(tokens, k)`` int64 token ids.

    Returns:
        ``(tokens,)`` fp32 forward KL (not scaled by T^2).
    """
    t = F.log_softmax(topk_values.float() / temperature, dim=-1)  # renormalised over the top-k
    s_all = F.log_softmax(student_logits.float() / temperature, dim=-1)
    s = s_all.gather(-1, topk_indices)
    return (t.exp() * (t - s)).sum(-1)
