"""Each proxy on a tiny fixed network equals a value worked out by hand (numpy formulas, not our code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from supernet import proxies as P

W1 = np.array([[1.0, -1.0], [0.5, 2.0]])  # hidden = W1 @ x
W2 = np.array([[1.0, 2.0], [0.5, -0.5]])  # logits = W2 @ relu(hidden)
X = np.array([[2.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])  # ReLU codes [1,1], [0,1], [1,0]
Y = np.array([0, 1, 0])


def tiny_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net


def batch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(X[:n]), torch.tensor(Y[:n])


# ---- hand formulas ------------------------------------------------------------------------------------------


def forward(w1, w2, x):
    h = x @ w1.T
    a = np.maximum(h, 0)
    return h, a, a @ w2.T


def grads(w1, w2, x, y):
    """dL/dW1, dL/dW2, dL/dh, dL/dz of the mean cross-entropy, by the chain rule."""
    h, a, z = forward(w1, w2, x)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(2)[y]) / len(y)
    dw2 = dz.T @ a
    dh = (dz @ w2) * (h > 0)
    return dh.T @ x, dw2, dh, dz


def test_snip_plain_grad_norm_l2():
    g1, g2, _, _ = grads(W1, W2, X, Y)
    net = tiny_net()
    assert P.snip(net, batch()) == pytest.approx(np.abs(W1 * g1).sum() + np.abs(W2 * g2).sum(), rel=1e-9)
    assert P.plain(net, batch()) == pytest.approx((W1 * g1).sum() + (W2 * g2).sum(), rel=1e-9)
    assert P.grad_norm(net, batch()) == pytest.approx(np.linalg.norm(g1) + np.linalg.norm(g2), rel=1e-9)
    assert P.l2_norm(net) == pytest.approx(np.linalg.norm(W1) + np.linalg.norm(W2), rel=1e-12)
    assert P.params(net) == 8
    assert P.flops(net, batch()) == 2 * (2 * 2) + 2 * (2 * 2)  # two 2x2 matmuls on one sample, 2 FLOPs per MAC


def test_fisher():
    h, _, z = forward(W1, W2, X)
    _, _, dh, dz = grads(W1, W2, X, Y)
    expected = 0.5 * ((h * dh) ** 2).mean(0).sum() + 0.5 * ((z * dz) ** 2).mean(0).sum()
    assert P.fisher(tiny_net(), batch()) == pytest.approx(expected, rel=1e-9)
    # NASLib's bookkeeping multiplies each channel by its fan-in (2 here)
    assert P.fisher(tiny_net(), batch(), naslib_weighting=True) == pytest.approx(2 * expected, rel=1e-9)


def test_grasp_matches_finite_difference_hessian():
    g1, g2, _, _ = grads(W1, W2, X, Y)
    eps = 1e-5
    p1, p2, _, _ = grads(W1 + eps * g1, W2 + eps * g2, X, Y)
    m1, m2, _, _ = grads(W1 - eps * g1, W2 - eps * g2, X, Y)
    hg1, hg2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)
    expected = (-W1 * hg1).sum() + (-W2 * hg2).sum()
    assert P.grasp(tiny_net(), batch()) == pytest.approx(expected, rel=1e-6, abs=1e-10)


def test_synflow():
    a1, a2 = np.abs(W1), np.abs(W2)
    hidden = a1 @ np.ones(2)  # all positive, so the ReLU passes it
    # R = sum_k sum_j |W2|_kj hidden_j;  dR/d|W2|_kj = hidden_j;  dR/d|W1|_ji = sum_k |W2|_kj * 1
    expected = (a2 * hidden[None, :]).sum() + (a1 * a2.sum(0)[:, None]).sum()
    assert P.synflow(tiny_net(), batch()) == pytest.approx(math.log(expected), rel=1e-12)


def test_synflow_bypasses_batchnorm():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[3].weight.copy_(torch.tensor(W2))
    assert P.synflow(net, batch()) == pytest.approx(P.synflow(tiny_net(), batch()), rel=1e-6)


def test_gradsign():
    signs = [np.zeros((2, 2)), np.zeros((2, 2))]
    for i in range(3):
        g1, g2, _, _ = grads(W1, W2, X[i : i + 1], Y[i : i + 1])
        signs[0] += np.sign(g1)
        signs[1] += np.sign(g2)
    expected = np.abs(signs[0]).sum() + np.abs(signs[1]).sum()
    assert P.gradsign(tiny_net(), batch()) == expected


def test_nwot():
    # codes [1,1], [0,1], [1,0]: K counts agreeing units -> [[2,1,1],[1,2,0],[1,0,2]], det = 4
    assert P.nwot(tiny_net(), batch()) == pytest.approx(math.log(4.0), rel=1e-12)
    # two samples with the same code make K singular
    twin = (torch.tensor(np.array([[2.0, 1.0], [4.0, 2.0]])), torch.tensor([0, 1]))
    assert P.nwot(tiny_net(), twin) == -math.inf


def test_jacov():
    h, _, _ = forward(W1, W2, X)
    jac = ((h > 0) * W2.sum(0)[None, :]) @ W1  # d(sum of logits)/dx per sample
    v = np.clip(np.linalg.eigvalsh(np.corrcoef(jac)), 0, None)
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert P.jacov(tiny_net(), batch()) == pytest.approx(expected, rel=1e-9)
    # an input the output ignores has a constant Jacobian: the correlation is undefined, reported as -inf
    dead = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        dead[0].weight.zero_()
    assert P.jacov(dead, batch()) == -math.inf


class Scale(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * x


def test_zen_on_a_normalised_pooling_net():
    # BN(c x) ~ x and BN(c (x + g e)) ~ x + g e, so the feature gap is g |e| (mean |N(0,1)| = sqrt(2/pi)) per
    # element and BN's batch std is c:  zen ~ log(g * D * sqrt(2/pi)) + log(c).
    c, g, d = 3.0, 1e-2, 3 * 32 * 32
    net = nn.Sequential(Scale(c), nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    x = torch.zeros(8, 3, 32, 32)
    value = P.zen(net, (x, torch.zeros(8, dtype=torch.long)), seed=0, mixup_gamma=g)
    assert value == pytest.approx(math.log(g * d * math.sqrt(2 / math.pi)) + math.log(c), abs=0.02)


def test_token_inputs_are_not_applicable_to_input_proxies():
    net = nn.Sequential(nn.Embedding(5, 4), nn.ReLU(), nn.Linear(4, 5))
    toks = (torch.tensor([[1, 2], [3, 4]]), torch.tensor([[2, 3], [4, 0]]))
    for fn in (P.jacov, P.zen):
        with pytest.raises(P.ProxyNotApplicableError, match="token"):
            fn(net, toks)
    scores = P.score(net, toks, names=["jacov", "snip", "nwot"], device="cpu")
    assert math.isnan(scores["jacov"]) and math.isfinite(scores["snip"]) and math.isfinite(scores["nwot"])
    with pytest.raises(P.ProxyNotApplicableError):
        P.score(net, toks, names=["jacov"], device="cpu", strict=True)


def test_nwot_needs_activation_modules():
    with pytest.raises(P.ProxyNotApplicableError, match="activation"):
        P.nwot(nn.Linear(2, 2), batch())
    gelu = nn.Sequential(nn.Linear(2, 2, bias=False), nn.GELU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        gelu[0].weight.copy_(torch.tensor(W1))
    # the sign-code extension: GELU's pre-activations give the same codes as the ReLU net above
    assert P.nwot(gelu, batch()) == pytest.approx(math.log(4.0), rel=1e-12)
    with pytest.raises(P.ProxyNotApplicableError):
        P.nwot(gelu, batch(), relu_only=True)


def test_bad_inputs_are_explained():
    with pytest.raises(TypeError, match="pair"):
        P.snip(tiny_net(), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="batch size"):
        P.snip(tiny_net(), (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(KeyError, match="unknown proxies"):
        P.score(tiny_net(), batch(), names=["nope"])
