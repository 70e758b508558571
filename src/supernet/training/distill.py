"""Distillation losses between a student's logits and a teacher's (detached) logits, rows = samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of ``KL(softmax(teacher / T) || softmax(student / T)) * T^2`` (teacher gets no gradient)."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(dim=-1)
    return kl.mean() * temperature**2


def _alpha_terms(
    log_q: torch.Tensor, log_p: torch.Tensor, alpha: float, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row value of ``D_alpha(p || q)`` and the weight ``rho`` of its gradient ``-E_q[rho * d log q]``.

    ``D_alpha(p||q) = sum_i q_i g(p_i / q_i)`` with ``g(t) = (t^a - 1) / (a (a - 1))``; then
    ``d D = sum_i q_i (g(t_i) - t_i g'(t_i)) d log q_i`` and ``g - t g' = -(t^a / a + 1 / (a (a - 1)))``.
    Limits: a -> 0 gives KL(q||p) (``rho = log t - 1``), a -> 1 gives KL(p||q) (``rho = t``). The importance
    weight ``t^a`` (``t`` for a = 1, ``log t`` uses ``t`` clipped) is clipped to ``[0, clip]``.
    """
    q = log_q.exp()
    log_t = log_p - log_q
    if abs(alpha) < 1e-3:
        t = log_t.exp().clamp(max=clip)
        value = -(q * t.log()).sum(-1)
        rho = t.log() - 1.0
    elif abs(alpha - 1.0) < 1e-3:
        t = log_t.exp().clamp(max=clip)
        value = (q * t * t.log()).sum(-1)
        rho = t
    else:
        w = (alpha * log_t).exp().clamp(max=clip)
        base = 1.0 / (alpha * (alpha - 1.0))
        value = (q * (w * base - base)).sum(-1)
        rho = w / alpha + base
    return value, rho


def alpha_divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    alpha_min: float = -1.0,
    alpha_max: float = 1.0,
    clip: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaNet's adaptive alpha-divergence distillation loss, averaged over rows.

    For each row (sample) both ``D_{alpha_min}(p||q)`` and ``D_{alpha_max}(p||q)`` are computed (p: teacher,
    q: student); the larger one is trained on, through its clipped importance-weighted gradient estimator.

    Returns:
        ``(surrogate, value)``: ``surrogate`` has the right gradient (backpropagate it), ``value`` is the mean
        selected divergence (for logging).
    """
    log_q = F.log_softmax(student.float(), dim=-1)
    log_p = F.log_softmax(teacher.detach().float(), dim=-1)
    lq = log_q.detach()
    v_lo, rho_lo = _alpha_terms(lq, log_p, alpha_min, clip)
    v_hi, rho_hi = _alpha_terms(lq, log_p, alpha_max, clip)
    pick_lo = (v_lo > v_hi).unsqueeze(-1)
    rho = torch.where(pick_lo, rho_lo, rho_hi)
    surrogate = -(lq.exp() * rho * log_q).sum(-1)
    value = torch.maximum(v_lo, v_hi)
    return surrogate.mean(), value.mean()
