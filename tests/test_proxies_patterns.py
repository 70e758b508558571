"""SWAP and VKDNW on tiny fixed networks equal values worked out by hand (numpy, not our code); both are
deterministic, refuse what they cannot score, and are finite on every ready space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import supernet.proxies.patterns as PP
from supernet import proxies as P
from tiny_spaces import PROXY_IMAGES as IMAGES
from tiny_spaces import PROXY_SPACES as SPACES
from tiny_spaces import tiny_space

# ---- SWAP -----------------------------------------------------------------------------------------------------------

SX = np.array([[2.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-2.0, -1.0]])
SW1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])  # unit 3 repeats unit 0's pattern
SW2 = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])  # two patterns of layer 1 again
SW3 = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5]])


def swap_net(act: type[nn.Module] = nn.ReLU) -> nn.Module:
    net = nn.Sequential(
        nn.Linear(2, 4, bias=False), act(), nn.Linear(4, 3, bias=False), act(), nn.Linear(3, 2)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(SW1))
        net[2].weight.copy_(torch.tensor(SW2))
        net[4].weight.copy_(torch.tensor(SW3))
    return net


def hand_patterns(x: np.ndarray, weights: list[np.ndarray]) -> set[tuple[bool, ...]]:
    """Each unit's column of ``pre-activation > 0`` over the samples, pooled over the ReLU layers."""
    patterns, a = set(), x
    for w in weights:
        h = a @ w.T
        patterns |= {tuple(h[:, u] > 0) for u in range(h.shape[1])}
        a = np.maximum(h, 0)
    return patterns


def swap_batch(x: np.ndarray = SX) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(x), torch.zeros(len(x), dtype=torch.long)


def test_swap_counts_distinct_patterns_over_all_layers():
    # layer 1 codes 1010, 1100, 1000, 1010; layer 2 codes 1100, 1010, 0000: 4 distinct (3 + 3 per layer, 7 units)
    expected = hand_patterns(SX, [SW1, SW2])
    assert len(expected) == 4
    assert PP.swap(swap_net(), swap_batch()) == 4.0
    assert P.PROXIES["swap"] is PP.swap and P.PROXIES["vkdnw"] is PP.vkdnw


def test_swap_packs_more_samples_than_one_word():
    x = torch.randn(70, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    expected = len(hand_patterns(x, [SW1, SW2]))
    assert PP.swap(swap_net(), swap_batch(x)) == expected
    # a unit whose pattern differs only in sample 69 (the second 63-bit word) is still told apart
    x2 = np.array([[1.0, 1.0]] * 69 + [[-1.0, 1.0]])
    assert len(hand_patterns(x2, [SW1[:2]])) == 2
    one_layer = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU()).double()
    with torch.no_grad():
        one_layer[0].weight.copy_(torch.tensor(SW1[:2]))
    assert PP.swap(one_layer, swap_batch(x2)) == 2.0


def test_swap_regularised():
    n_params = 4 * 2 + 3 * 4 + 2 * 3 + 2  # the three weights and the last bias
    factor = math.exp(-((n_params / 1e3 - 0.02) ** 2) / 1e-4)
    assert PP.swap_size_factor(swap_net(), 0.02, 1e-4) == pytest.approx(factor, rel=1e-12)
    assert PP.swap(swap_net(), swap_batch(), mu=0.02, sigma=1e-4) == pytest.approx(4 * factor, rel=1e-12)
    assert PP.swap_regularised(0.02, 1e-4)(swap_net(), swap_batch()) == pytest.approx(4 * factor, rel=1e-12)
    with pytest.raises(ValueError, match="both"):
        PP.swap(swap_net(), swap_batch(), mu=1.0)
    with pytest.raises(ValueError, match="sigma"):
        PP.swap(swap_net(), swap_batch(), mu=1.0, sigma=0.0)


def test_swap_activation_modules():
    with pytest.raises(P.ProxyNotApplicableError, match="activation"):
        PP.swap(nn.Linear(2, 2).double(), swap_batch())
    gelu = nn.Sequential(nn.Linear(2, 4, bias=False), nn.GELU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        gelu[0].weight.copy_(torch.tensor(SW1))
    # the sign-code extension: GELU's pre-activations give layer 1's three patterns
    assert PP.swap(gelu, swap_batch()) == len(hand_patterns(SX, [SW1])) == 3
    with pytest.raises(P.ProxyNotApplicableError):
        PP.swap(gelu, swap_batch(), relu_only=True)
    assert math.isnan(P.score(nn.Linear(2, 2).double(), swap_batch(), names=["swap"], device="cpu")["swap"])


# ---- VKDNW ----------------------------------------------------------------------------------------------------------

VW1 = np.array([[1.0, -1.0], [0.5, 2.0]])
VW2 = np.array([[1.0, 2.0], [0.5, -0.5], [-1.0, 0.3]])
VX = np.array([[2.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
VY = np.array([0, 1, 2])
ALPHA = 0.05


def vkdnw_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 3, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(VW1))
        net[2].weight.copy_(torch.tensor(VW2))
    return net


def vkdnw_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(VX), torch.tensor(VY)


def hand_jacobians() -> tuple[np.ndarray, np.ndarray]:
    """Per-sample d logits / d (W1[0,0], W1[1,1], W2[0,0], W2[2,1]) (flat indices linspace(0, numel-1, 2)), logits."""
    jac, logits = [], []
    for x in VX:
        h = VW1 @ x
        a = np.maximum(h, 0)
        z = VW2 @ a
        cols = [
            VW2[:, 0] * (h[0] > 0) * x[0],  # z_c = sum_j W2[c,j] relu(sum_i W1[j,i] x_i)
            VW2[:, 1] * (h[1] > 0) * x[1],
            np.array([a[0], 0.0, 0.0]),
            np.array([0.0, 0.0, a[1]]),
        ]
        jac.append(np.stack(cols, axis=1))
        logits.append(z)
    return np.array(jac), np.array(logits)


def smoothed_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return (1 - ALPHA) * e / e.sum() + ALPHA / len(z)


def hand_entropy(fisher: np.ndarray) -> float:
    lam = np.abs(np.linalg.eigvalsh(fisher))
    q = np.quantile(lam, np.arange(1, 10) / 10)
    t = q / (np.abs(q).sum() + 1e-10)
    return float(-(t * np.log(t + 1e-10)).sum())


def test_vkdnw_fisher_and_entropy():
    jac, logits = hand_jacobians()
    fisher = np.zeros((4, 4))
    for j, z in zip(jac, logits, strict=True):
        p = smoothed_softmax(z)
        fisher += j.T @ (np.diag(p) - np.outer(p, p)) @ j / len(VX)
    got = PP.vkdnw_fisher(vkdnw_net(), vkdnw_batch(), per_tensor=2)
    np.testing.assert_allclose(got.numpy(), fisher, rtol=1e-10, atol=1e-14)
    assert np.linalg.matrix_rank(fisher) == 4  # 3 samples x (3 - 1) classes >= 4 weights
    expected = hand_entropy(fisher)
    assert PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2) == pytest.approx(expected, rel=1e-9)
    for mode in ("forward", "reverse"):
        assert PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2, jacobian=mode) == pytest.approx(expected, rel=1e-9)
    # defaults: one weight (index 0) per tensor, W1[0,0] and W2[0,0]
    np.testing.assert_allclose(
        PP.vkdnw_fisher(vkdnw_net(), vkdnw_batch()).numpy(), fisher[np.ix_([0, 2], [0, 2])], rtol=1e-10
    )
    # max_tensors=1 keeps only the first tensor, W1
    np.testing.assert_allclose(
        PP.vkdnw_fisher(vkdnw_net(), vkdnw_batch(), per_tensor=2, max_tensors=1).numpy(),
        fisher[:2, :2],
        rtol=1e-10,
    )
    single = PP.vkdnw_single(vkdnw_net(), vkdnw_batch(), per_tensor=2)
    assert single == pytest.approx(2 + expected / math.log(10), rel=1e-9)


def test_vkdnw_reference_factor():
    # the official code multiplies J by the lower Cholesky factor L of the covariance (L L^T = cov): (L J)^T (L J)
    jac, logits = hand_jacobians()
    fisher = np.zeros((4, 4))
    for j, z in zip(jac, logits, strict=True):
        p = smoothed_softmax(z)
        cov = np.diag(p) - np.outer(p, p)  # rank 2: Cholesky of the leading 2x2 block, last column zero
        l11 = np.linalg.cholesky(cov[:2, :2])
        low = np.zeros((3, 3))
        low[:2, :2] = l11
        low[2, :2] = cov[2, :2] @ np.linalg.inv(l11).T
        np.testing.assert_allclose(low @ low.T, cov, atol=1e-12)
        fisher += (low @ j).T @ (low @ j) / len(VX)
    got = PP.vkdnw_fisher(vkdnw_net(), vkdnw_batch(), per_tensor=2, reference_factor=True)
    np.testing.assert_allclose(got.numpy(), fisher, rtol=1e-9, atol=1e-14)
    value = PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2, reference_factor=True)
    assert value == pytest.approx(hand_entropy(fisher), rel=1e-9)
    assert value != pytest.approx(PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2), rel=1e-3)


def test_vkdnw_token_logits_pool_every_position():
    emb, head = np.array([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4]]), np.array([[0.7, -0.2], [0.1, 0.9], [-0.6, 0.5]])
    net = nn.Sequential(nn.Embedding(3, 2), nn.Linear(2, 3, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(emb))
        net[1].weight.copy_(torch.tensor(head))
    toks = torch.tensor([[0, 1, 2], [2, 0, 0]])
    # z = head @ emb[t]; d z / d emb[0,0] = head[:, 0] [t == 0]; d z / d head[0,0] = e_0 emb[t, 0]
    fisher = np.zeros((2, 2))
    for t in toks.flatten().tolist():
        j = np.stack([head[:, 0] * (t == 0), np.array([emb[t, 0], 0.0, 0.0])], axis=1)
        p = smoothed_softmax(head @ emb[t])
        fisher += j.T @ (np.diag(p) - np.outer(p, p)) @ j / toks.numel()
    np.testing.assert_allclose(PP.vkdnw_fisher(net, (toks, toks)).numpy(), fisher, rtol=1e-10)
    assert PP.vkdnw(net, (toks, toks)) == pytest.approx(hand_entropy(fisher), rel=1e-9)


class _NoForwardAD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0)


class _Relu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NoForwardAD.apply(x)


def test_vkdnw_falls_back_to_reverse_mode():
    net = vkdnw_net()
    net[1] = _Relu()
    expected = PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2)
    assert PP.vkdnw(net, vkdnw_batch(), per_tensor=2, jacobian="reverse") == pytest.approx(expected, rel=1e-9)
    assert PP.vkdnw(net, vkdnw_batch(), per_tensor=2) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(RuntimeError):
        PP.vkdnw(net, vkdnw_batch(), per_tensor=2, jacobian="forward")


def test_vkdnw_reverse_mode_is_vmapped_per_sample(monkeypatch: pytest.MonkeyPatch):
    expected = PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2)

    def loop_not_used(*args, **kwargs):
        raise AssertionError("the per-logit loop ran")

    monkeypatch.setattr(PP, "_jacobian_reverse", loop_not_used)
    assert PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2, jacobian="reverse") == pytest.approx(expected, rel=1e-9)
    with torch.no_grad():  # a function transform: the caller's no_grad does not reach inside it
        assert PP.vkdnw(vkdnw_net(), vkdnw_batch(), per_tensor=2, jacobian="reverse") == pytest.approx(
            expected, rel=1e-9
        )


class _CentreBatch(nn.Module):
    """Couples the samples of a batch (as a batch-statistics norm does): a sample alone is not the same sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(0, keepdim=True)


def test_vkdnw_reverse_mode_does_not_vmap_a_network_that_couples_its_samples():
    net = nn.Sequential(_CentreBatch(), *vkdnw_net())
    forward = PP.vkdnw_fisher(net, vkdnw_batch(), per_tensor=2, jacobian="forward")
    assert PP._jacobian_per_sample(net, torch.tensor(VX), PP._selected_weights(net, 128, 2, False, 0),
                                   net(torch.tensor(VX))) is None
    np.testing.assert_allclose(PP.vkdnw_fisher(net, vkdnw_batch(), per_tensor=2, jacobian="reverse").numpy(),
                               forward.numpy(), rtol=1e-9, atol=1e-14)


def test_vkdnw_not_applicable():
    with pytest.raises(P.ProxyNotApplicableError, match="parameters"):
        PP.vkdnw(nn.Identity(), vkdnw_batch())
    regression = (torch.tensor(VX), torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(P.ProxyNotApplicableError, match="logits"):
        PP.vkdnw(vkdnw_net(), regression)
    assert math.isnan(P.score(vkdnw_net(), regression, names=["vkdnw"], device="cpu")["vkdnw"])


def test_vkdnw_restores_modes_and_samples_tensors_by_seed():
    space = tiny_space("nb201", num_classes=4)
    net = P.fresh_network(space, space.max_arch(), seed=0)
    net.train()
    batch = IMAGES
    a = PP.vkdnw(net, batch, seed=1, max_tensors=5, sample_tensors=True)
    assert all(m.training for m in net.modules())
    assert PP.vkdnw(net, batch, seed=1, max_tensors=5, sample_tensors=True) == a
    picks = {tuple(n for n, _, _ in PP._selected_weights(net, 5, 1, True, s)) for s in range(4)}
    assert len(picks) > 1  # the seed picks the tensors
    first = [n for n, _ in net.named_parameters()][:5]
    assert [n for n, _, _ in PP._selected_weights(net, 5, 1, False, 7)] == first


# ---- every ready space ----------------------------------------------------------------------------------------------



@pytest.mark.parametrize("name", list(SPACES))
def test_finite_and_deterministic_on_every_ready_space(name):
    make, batch = SPACES[name]
    space = make()
    arch = space.max_arch()
    first = P.score(space, batch, arch=arch, names=["swap", "vkdnw"], device="cpu", seed=1, strict=True)
    assert all(math.isfinite(v) for v in first.values()), first
    assert 1 <= first["swap"] <= 2 ** batch[0].shape[0]
    assert 0 <= first["vkdnw"] <= math.log(9) + 1e-9
    assert P.score(space, batch, arch=arch, names=["swap", "vkdnw"], device="cpu", seed=1) == first
