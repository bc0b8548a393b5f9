"""Distillation losses: the identities from the issue, gradient agreement, padding, chunking, NaN safety."""

from __future__ import annotations

import math

import pytest
import torch

from stratos_train.losses import (
    KDLossConfig,
    chunked_kd_loss,
    chunked_topk_kd_loss,
    divergence_per_token,
    kd_loss_reference,
    topk_kd_loss_per_token,
)

TEACHER = torch.tensor([[2.0, 1.0, 0.0]])
STUDENT = torch.zeros(1, 3)


def test_forward_kl_identity():
    kl = divergence_per_token(STUDENT, TEACHER, "forward_kl", temperature=2.0).item()
    assert kl == pytest.approx(0.0784, abs=5e-5)
    assert kl * 4 == pytest.approx(0.3137, abs=5e-5)


def test_reverse_kl_identity():
    kl = divergence_per_token(STUDENT, TEACHER, "reverse_kl", temperature=2.0).item()
    assert kl == pytest.approx(0.0817, abs=5e-5)
    assert kl * 4 == pytest.approx(0.3266, abs=5e-5)


def test_identity_inputs_give_zero():
    x = torch.randn(5, 11)
    for kind, beta in (("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1)):
        assert divergence_per_token(x, x.clone(), kind, beta).abs().max().item() < 1e-6


def test_jsd_endpoints_match_kls():
    s, t = torch.randn(4, 9), torch.randn(4, 9)
    for temp in (1.0, 2.0):
        fwd = divergence_per_token(s, t, "forward_kl", temperature=temp)
        rev = divergence_per_token(s, t, "reverse_kl", temperature=temp)
        assert torch.allclose(divergence_per_token(s, t, "jsd", 0.0, temp), fwd)
        assert torch.allclose(divergence_per_token(s, t, "jsd", 1.0, temp), rev)


def test_jsd_bounded_by_log2_and_symmetric_at_half():
    s, t = torch.randn(6, 7) * 5, torch.randn(6, 7) * 5
    jsd = divergence_per_token(s, t, "jsd", 0.5)
    assert (jsd <= math.log(2) + 1e-6).all() and (jsd >= -1e-7).all()
    assert torch.allclose(jsd, divergence_per_token(t, s, "jsd", 0.5), atol=1e-6)


def test_jsd_small_beta_scales_to_forward_kl():
    """JSD_beta / beta -> KL(p_t || p_s) as beta -> 0 (the convention that defines beta = 0)."""
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    beta = 1e-4
    ratio = divergence_per_token(s, t, "jsd", beta).double() / beta
    assert torch.allclose(ratio, divergence_per_token(s, t, "forward_kl").double(), rtol=2e-2)


@pytest.mark.parametrize(
    ("divergence", "beta", "alpha", "temperature"),
    [
        ("forward_kl", 0.5, 0.0, 2.0),
        ("reverse_kl", 0.5, 0.3, 1.5),
        ("jsd", 0.3, 0.2, 1.0),
        ("jsd", 0.9, 0.0, 3.0),
        ("jsd", 0.0, 0.5, 1.0),
        ("forward_kl", 0.5, 1.0, 1.0),
    ],
)
def test_chunked_matches_reference_loss_and_gradients(divergence, beta, alpha, temperature):
    torch.manual_seed(0)
    n, hidden, vocab = 37, 16, 50
    h = torch.randn(n, hidden, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab + 3, hidden, dtype=torch.float64, requires_grad=True)  # 3 padded rows
    th = torch.randn(n, 8, dtype=torch.float64)
    tw = torch.randn(vocab + 7, 8, dtype=torch.float64)  # teacher pads differently
    y = torch.randint(0, vocab, (n,))
    y[:5] = -100
    cfg = KDLossConfig(divergence, beta, temperature, alpha, chunk_size=7)
    keep = y != -100
    fused = chunked_kd_loss(h[keep], w, y[keep], cfg, th[keep], tw, vocab_size=vocab)
    fused.backward()
    g_fused = (h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    ref = kd_loss_reference(h @ w[:vocab].T, th @ tw[:vocab].T, y, cfg)
    ref.backward()
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g_fused[0], h.grad, atol=1e-5)
    assert torch.allclose(g_fused[1], w.grad, atol=1e-5)
    assert w.grad[vocab:].abs().max() == 0  # padded rows never receive gradient


def test_chunk_size_does_not_change_result():
    torch.manual_seed(1)
    h, w = torch.randn(20, 8), torch.randn(30, 8)
    th, tw = torch.randn(20, 8), torch.randn(30, 8)
    y = torch.randint(0, 30, (20,))
    results = {
        c: chunked_kd_loss(h, w, y, KDLossConfig(temperature=2.0, chunk_size=c), th, tw).item() for c in (1, 3, 20, 64)
    }
    assert max(results.values()) - min(results.values()) < 1e-4


def test_no_kept_tokens_gives_zero_not_nan():
    h = torch.randn(0, 8, requires_grad=True)
    w = torch.randn(30, 8, requires_grad=True)
    loss = chunked_kd_loss(
        h, w, torch.zeros(0, dtype=torch.long), KDLossConfig(), torch.randn(0, 8), torch.randn(30, 8)
    )
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.isfinite(w.grad).all()


def test_rejects_bad_inputs():
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match="teacher is required"):
        chunked_kd_loss(h, w, torch.zeros(4, dtype=torch.long), KDLossConfig(alpha=0.5))
    with pytest.raises(ValueError, match="shared vocabulary"):
        chunked_kd_loss(h, w, torch.full((4,), 9), KDLossConfig(alpha=1.0), vocab_size=5)
    with pytest.raises(ValueError, match="beta"):
        KDLossConfig(beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        KDLossConfig(temperature=0)


def test_topk_cache_exact_when_tail_is_empty():
    """With all teacher mass inside the top-k, the cached loss equals the full forward KL."""
    s = torch.randn(3, 6)
    t = torch.full((3, 6), -1e4)
    t[:, :2] = torch.tensor([1.0, 0.5])
    values, indices = t.topk(2, dim=-1)
    cached = topk_kd_loss_per_token(s, values, indices)
    assert torch.allclose(cached, divergence_per_token(s, t, "forward_kl"), atol=1e-5)


def test_chunked_topk_matches_autograd_reference():
    """The fused top-k path: loss and gradients equal autograd on the explicit formula."""
    torch.manual_seed(3)
    n, hidden, vocab, k = 13, 8, 40, 5
    h = torch.randn(n, hidden, dtype=torch.float64, requires_grad=True)
    w = torch.randn(vocab, hidden, dtype=torch.float64, requires_grad=True)
    teacher_logits = torch.randn(n, vocab, dtype=torch.float64) * 3
    values, indices = teacher_logits.topk(k, dim=-1)
    y = torch.randint(0, vocab, (n,))
    cfg = KDLossConfig("forward_kl", temperature=2.0, alpha=0.25, chunk_size=4)
    fused = chunked_topk_kd_loss(h, w, y, cfg, values, indices)
    fused.backward()
    g = (h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    z = h @ w.T
    ref = (1 - cfg.alpha) * 4.0 * topk_kd_loss_per_token(z, values, indices, temperature=2.0).sum()
    ref = ref + cfg.alpha * torch.nn.functional.cross_entropy(z, y, reduction="sum")
    ref.backward()
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g[0], h.grad, atol=1e-5) and torch.allclose(g[1], w.grad, atol=1e-5)
    with pytest.raises(ValueError, match="only the forward KL"):
        chunked_topk_kd_loss(h, w, y, KDLossConfig("reverse_kl"), values, indices)
