"""ZiCo and MeCo (`supernet.proxies.gradstats`) against values worked out by hand on tiny fixed networks."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import supernet.proxies.gradstats as G
from supernet import proxies as P
from tiny_spaces import PROXY_SPACES as SPACES
from tiny_spaces import TINY

W1 = np.array([[1.0, -1.0], [0.5, 2.0]])  # hidden = W1 @ x
W2 = np.array([[1.0, 2.0], [0.5, -0.5]])  # logits = W2 @ relu(hidden)
X = np.array([[2.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [0.5, 3.0], [-2.0, 0.5]])
Y = np.array([0, 1, 0, 1, 1])
# hidden unit 2 (0.5 x0 + 2 x1) is negative on every sample: its weights' gradients are 0 in both halves
X_DEAD = np.array([[2.0, -1.0], [-1.0, -2.0], [1.0, -2.0], [3.0, -2.0]])


def mlp(w1: np.ndarray = W1, w2: np.ndarray = W2) -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1))
        net[2].weight.copy_(torch.tensor(w2))
    return net


def as_batch(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(x), torch.tensor(y)


# ---- ZiCo by hand ---------------------------------------------------------------------------------------------


def mlp_grads(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """dL/dW1, dL/dW2 of the mean cross-entropy of the ReLU MLP, by the chain rule."""
    h = x @ w1.T
    a = np.maximum(h, 0)
    z = a @ w2.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(2)[y]) / len(y)
    dh = (dz @ w2) * (h > 0)
    return [dh.T @ x, dz.T @ a]


def zico_by_hand(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    half = len(x) // 2
    first, second = mlp_grads(w1, w2, x[:half], y[:half]), mlp_grads(w1, w2, x[half:], y[half:])
    total = 0.0
    for g1, g2 in zip(first, second, strict=True):
        g = np.stack([g1.ravel(), g2.ravel()])
        sd, mu = g.std(axis=0), np.abs(g).mean(axis=0)
        s = (mu[sd > 0] / sd[sd > 0]).sum()
        if s > 0:
            total += math.log(s)
    return total


@pytest.mark.parametrize("n", [4, 5, 2])
def test_zico_matches_hand_value(n):
    value = G.zico(mlp(), as_batch(X[:n], Y[:n]))
    assert value == pytest.approx(zico_by_hand(W1, W2, X[:n], Y[:n]), rel=1e-9)
    # per weight (|g1| + |g2|) / 2 / (|g1 - g2| / 2): written out for the 2-sample case
    if n == 2:
        g1, g2 = mlp_grads(W1, W2, X[:1], Y[:1]), mlp_grads(W1, W2, X[1:2], Y[1:2])
        expected = sum(math.log(((np.abs(a) + np.abs(b)) / np.abs(a - b)).sum()) for a, b in zip(g1, g2, strict=True))
        assert value == pytest.approx(expected, rel=1e-9)


def test_zico_leaves_out_constant_gradients_and_empty_layers():
    g1, g2 = mlp_grads(W1, W2, X_DEAD[:2], Y[:2]), mlp_grads(W1, W2, X_DEAD[2:], Y[2:4])
    assert np.all(g1[0][1] == 0) and np.all(g2[0][1] == 0)  # the dead unit: std 0, left out (not 0/0 = nan)
    value = G.zico(mlp(), as_batch(X_DEAD, Y[:4]))
    assert math.isfinite(value) and value == pytest.approx(zico_by_hand(W1, W2, X_DEAD, Y[:4]), rel=1e-9)
    # W2 = 0: no gradient reaches W1, so the first layer adds nothing; only log(S) of the second layer is left
    zero = np.zeros((2, 2))
    g1, g2 = mlp_grads(W1, zero, X[:2], Y[:2]), mlp_grads(W1, zero, X[2:4], Y[2:4])
    assert np.all(g1[0] == 0) and np.all(g2[0] == 0)
    sd = np.abs(g1[1] - g2[1]) / 2
    expected = math.log(((np.abs(g1[1]) + np.abs(g2[1])) / 2 / sd).sum())
    assert G.zico(mlp(w2=zero), as_batch(X[:4], Y[:4])) == pytest.approx(expected, rel=1e-9)


def test_zico_needs_two_samples_and_a_scored_layer():
    with pytest.raises(P.ProxyNotApplicableError, match="at least 2"):
        G.zico(mlp(), as_batch(X[:1], Y[:1]))
    with pytest.raises(P.ProxyNotApplicableError):
        G.zico(nn.Sequential(nn.Flatten()), as_batch(X, Y))
    assert math.isnan(P.score(mlp(), as_batch(X[:1], Y[:1]), names=["zico"], device="cpu")["zico"])


def test_zico_deterministic_seeded_and_batch_dependent():
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    b = as_batch(X, Y)
    rng = torch.get_rng_state()
    first = G.zico(copy.deepcopy(net), b, seed=0)
    assert torch.equal(rng, torch.get_rng_state())  # the dropout draws do not touch the global RNG
    assert G.zico(copy.deepcopy(net), b, seed=0) == first
    assert G.zico(copy.deepcopy(net), b, seed=1) != first  # other dropout masks
    assert G.zico(copy.deepcopy(net), as_batch(X[::-1].copy(), Y[::-1].copy()), seed=0) != first


# ---- MeCo by hand ---------------------------------------------------------------------------------------------


def min_eig_corr(rows: np.ndarray) -> float:
    """Smallest eigenvalue of the Pearson correlation of the rows, NaN/inf entries set to 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(rows)
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0, posinf=0.0, neginf=0.0)
    return float(np.linalg.eigvalsh(corr).min())


def conv_by_hand(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation of one sample ``x`` (C, H, W) with ``w`` (O, C, k, k), plus bias ``b`` (O,)."""
    o, _, k, _ = w.shape
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((o, h, wd))
    for c, i, j in itertools.product(range(o), range(h), range(wd)):
        out[c, i, j] = (w[c] * x[:, i : i + k, j : j + k]).sum() + b[c]
    return out


def fixed(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def conv_net(ca: np.ndarray, cb: np.ndarray, bb: np.ndarray) -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(2, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 4, 2), nn.Flatten(), nn.Linear(4 * 3 * 3, 2)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(ca))
        net[2].weight.copy_(torch.tensor(cb))
        net[2].bias.copy_(torch.tensor(bb))
    return net


CA, CB, BB = fixed((3, 2, 1, 1), 1), fixed((4, 3, 2, 2), 2), fixed((4,), 3)
IMG = fixed((2, 2, 4, 4), 4)


def meco_by_hand(ca: np.ndarray, cb: np.ndarray, bb: np.ndarray, img: np.ndarray) -> float:
    """First sample only: channels x positions of both convs; the Linear head's flat output is not scored."""
    f1 = conv_by_hand(img[0], ca, np.zeros(3))
    f2 = conv_by_hand(np.maximum(f1, 0), cb, bb)
    return min_eig_corr(f1.reshape(3, -1)) + min_eig_corr(f2.reshape(4, -1))


def test_meco_matches_hand_value_on_a_conv_net():
    batch = (torch.tensor(IMG), torch.tensor([0, 1]))
    expected = meco_by_hand(CA, CB, BB, IMG)
    assert G.meco(conv_net(CA, CB, BB), batch) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # only the first sample is scored (no BatchNorm here, so the second one does not matter)
    other = IMG.copy()
    other[1] = fixed((2, 4, 4), 5)
    assert G.meco(conv_net(CA, CB, BB), (torch.tensor(other), torch.tensor([0, 1]))) == pytest.approx(expected)
    # a constant channel (zero weights and bias): its correlations are NaN, set to 0, so lambda_min of that layer
    # is 0 and only the first layer's value is left
    cb0, bb0 = CB.copy(), BB.copy()
    cb0[1], bb0[1] = 0.0, 0.0
    value = G.meco(conv_net(CA, cb0, bb0), batch)
    assert value == pytest.approx(meco_by_hand(CA, cb0, bb0, IMG), rel=1e-9, abs=1e-12)
    assert value == pytest.approx(min_eig_corr(conv_by_hand(IMG[0], CA, np.zeros(3)).reshape(3, -1)), abs=1e-12)


def test_meco_on_token_features_correlates_tokens():
    w, b = fixed((5, 3), 6), fixed((5,), 7)
    net = nn.Linear(3, 5).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w))
        net.bias.copy_(torch.tensor(b))
    x = fixed((2, 3, 3), 8)  # (B, T, C): 3 tokens of 3 features
    expected = min_eig_corr(x[0] @ w.T + b)  # (T, 5): rows are the 3 tokens, correlated over the 5 features
    assert G.meco(net, (torch.tensor(x), torch.zeros(2, 3, 5, dtype=torch.float64))) == pytest.approx(
        expected, rel=1e-9
    )


def test_meco_opt_rescales_a_random_subset_of_rows():
    net = nn.Conv2d(3, 10, 3, padding=1).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(fixed((10, 3, 3, 3), 9)))
        net.bias.zero_()
    img = fixed((1, 3, 5, 5), 10)
    padded = np.pad(img[0], ((0, 0), (1, 1), (1, 1)))
    rows = conv_by_hand(padded, fixed((10, 3, 3, 3), 9), np.zeros(10)).reshape(10, -1)
    batch = (torch.tensor(img), torch.zeros(1, dtype=torch.long))
    assert G.meco(net, batch) == pytest.approx(min_eig_corr(rows), rel=1e-9)
    candidates = [10 / 8 * min_eig_corr(rows[list(s)]) for s in itertools.combinations(range(10), 8)]
    values = [G.meco(net, batch, seed=s, opt=True) for s in range(4)]
    for v in values:
        assert min(abs(v - c) for c in candidates) < 1e-9
    assert G.meco(net, batch, seed=0, opt=True) == values[0]
    assert len(set(values)) > 1  # the subset follows the seed
    # no more rows than the subset: all rows, factor 1 (plain MeCo)
    assert G.meco(net, batch, opt=True, subset=10) == pytest.approx(min_eig_corr(rows), rel=1e-9)


def test_meco_needs_feature_maps_and_follows_the_batch():
    with pytest.raises(P.ProxyNotApplicableError, match="flat"):
        G.meco(mlp(), as_batch(X, Y))
    assert math.isnan(P.score(mlp(), as_batch(X, Y), names=["meco"], device="cpu")["meco"])
    with pytest.raises(ValueError, match="subset"):
        G.meco(conv_net(CA, CB, BB), (torch.tensor(IMG), torch.tensor([0, 1])), opt=True, subset=1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Dropout())
    b = (torch.tensor(IMG, dtype=torch.float32), torch.tensor([0, 1]))
    first = G.meco(copy.deepcopy(net), b)
    assert G.meco(copy.deepcopy(net), b) == first
    assert G.meco(copy.deepcopy(net), (b[0].flip(0), b[1])) != first


# ---- every ready space ----------------------------------------------------------------------------------------



def test_every_ready_space_is_covered():
    assert set(SPACES) == set(TINY)
    assert "zico" in P.PROXIES and "meco" in P.PROXIES


@pytest.mark.parametrize("name", list(SPACES))
def test_finite_and_deterministic_on_every_ready_space(name):
    make, batch = SPACES[name]
    space = make()
    for arch in (space.max_arch(), space.sample(seed=3)):
        first = P.score(space, batch, arch=arch, names=["zico", "meco"], device="cpu", strict=True)
        assert all(math.isfinite(v) for v in first.values()), first
        assert P.score(space, batch, arch=arch, names=["zico", "meco"], device="cpu") == first
