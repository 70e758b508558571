"""AZ-NAS proxies on tiny fixed networks equal values worked out by hand (plain torch/numpy written out here),
plus the rank aggregation, the not-applicable cases and the ready spaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet.proxies.aznas as AZ
from supernet import proxies as P
from tiny_spaces import PROXY_SPACES as SPACES
from tiny_spaces import tiny_space

NAMES = ["az_expressivity", "az_progressivity", "az_trainability"]

# ---- hand formulas (independent of supernet.proxies.aznas) --------------------------------------------------


def hand_entropy(rows: np.ndarray) -> float:
    """Entropy of the normalised eigenvalues of the (biased) covariance of the rows."""
    c = rows - rows.mean(axis=0, keepdims=True)
    s = np.linalg.eigvalsh(c.T @ c / rows.shape[0])
    p = s / s.sum()
    return float(np.sum(-p * np.log(p + 1e-8)))


def image_rows(f: torch.Tensor) -> np.ndarray:  # (B, C, H, W) -> (B*H*W, C)
    return f.detach().permute(0, 2, 3, 1).reshape(-1, f.shape[1]).numpy()


def token_rows(f: torch.Tensor) -> np.ndarray:  # (B, N, C) -> (B*N, C)
    return f.detach().reshape(-1, f.shape[-1]).numpy()


def unshuffle(g: torch.Tensor, k: int) -> torch.Tensor:
    b, c, h, w = g.shape
    return g.reshape(b, c, h // k, k, w // k, k).permute(0, 1, 3, 5, 2, 4).reshape(b, c * k * k, h // k, w // k)


def hand_scores(feats: list[torch.Tensor], rows, gen: torch.Generator) -> tuple[float, float, float]:
    """(expressivity, progressivity, trainability) of a chain of features, Rademacher draws from ``gen`` for the
    last pair first."""
    ent = [hand_entropy(rows(f)) for f in feats]
    expressivity = sum(ent)
    progressivity = min(ent[i] - ent[i - 1] for i in range(1, len(ent)))
    pair_scores = []
    for i in reversed(range(1, len(feats))):
        f_in, f_out = feats[i - 1], feats[i]
        r = torch.bernoulli(torch.full(f_out.shape, 0.5), generator=gen).double() * 2 - 1
        (g,) = torch.autograd.grad(f_out, f_in, r, retain_graph=True)
        if g.dim() == 4 and g.shape[2] != r.shape[2]:
            g = unshuffle(g, g.shape[2] // r.shape[2])
        gi, go = rows(g), rows(r)
        mat = gi.T @ go / go.shape[0]
        sigma = np.linalg.svd(mat, compute_uv=False).max()
        pair_scores.append(2.0 - sigma - 1.0 / (sigma + 1e-6))
    return expressivity, progressivity, float(np.mean(pair_scores))


# ---- a tiny CNN: stem conv, then blocks [conv-BN-ReLU, stride-2 conv-ReLU], then a head ----------------------


class ConvBNBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class DownBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1, bias=False)
        self.body = nn.Sequential(ConvBNBlock(), DownBlock())
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))


def fixed(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def tiny_cnn() -> TinyCNN:
    net = TinyCNN().double()
    with torch.no_grad():
        net.stem.weight.copy_(fixed((2, 1, 1, 1), 1))
        net.body[0].conv.weight.copy_(fixed((2, 2, 3, 3), 2))
        net.body[0].bn.weight.copy_(torch.tensor([1.5, 0.75]))  # exact in float32 too
        net.body[0].bn.bias.copy_(torch.tensor([0.125, -0.25]))
        net.body[1].conv.weight.copy_(fixed((3, 2, 2, 2), 3))
        net.body[1].conv.bias.copy_(torch.tensor([0.0625, -0.125, 0.25]))
    return net


IMG = (fixed((3, 1, 4, 4), 0), torch.tensor([0, 1, 0]))


def cnn_features(ws, w1, gamma, beta, w2, b2, x) -> list[torch.Tensor]:
    f0 = F.conv2d(x, ws).detach().requires_grad_(True)
    c = F.conv2d(f0, w1, padding=1)
    mu = c.mean(dim=(0, 2, 3), keepdim=True)
    var = c.var(dim=(0, 2, 3), unbiased=False, keepdim=True)  # BatchNorm in train mode: batch statistics
    f1 = torch.relu((c - mu) / torch.sqrt(var + 1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1))
    f2 = torch.relu(F.conv2d(f1, w2, b2, stride=2))
    return [f0, f1, f2]


def test_cnn_scores_equal_hand_values():
    net = tiny_cnn()
    feats = cnn_features(
        fixed((2, 1, 1, 1), 1),
        fixed((2, 2, 3, 3), 2),
        torch.tensor([1.5, 0.75], dtype=torch.float64),
        torch.tensor([0.125, -0.25], dtype=torch.float64),
        fixed((3, 2, 2, 2), 3),
        torch.tensor([0.0625, -0.125, 0.25], dtype=torch.float64),
        IMG[0],
    )
    e, p, t = hand_scores(feats, image_rows, torch.Generator().manual_seed(5))
    got = {n: P.PROXIES[n](net, IMG, seed=5, init=False) for n in NAMES}
    assert got["az_expressivity"] == pytest.approx(e, rel=1e-9)
    assert got["az_progressivity"] == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert got["az_trainability"] == pytest.approx(t, rel=1e-9)
    assert AZ.az_nas_scores(net, IMG, seed=5, init=False) == {
        "expressivity": got["az_expressivity"],
        "progressivity": got["az_progressivity"],
        "trainability": got["az_trainability"],
    }
    # the network itself is left untouched
    assert torch.equal(net.stem.weight, fixed((2, 1, 1, 1), 1))


def test_official_initialisation_then_rademacher_draws_from_one_seeded_generator():
    net = tiny_cnn()
    gen = torch.Generator().manual_seed(7)

    def kaiming(shape: tuple[int, ...]) -> torch.Tensor:  # N(0, 2 / fan_in), drawn in module order
        fan_in = int(np.prod(shape[1:]))
        return (torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)).double()

    ws, w1, w2 = kaiming((2, 1, 1, 1)), kaiming((2, 2, 3, 3)), kaiming((3, 2, 2, 2))
    kaiming((2, 3))  # the head Linear also draws
    one, zero = torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    feats = cnn_features(ws, w1, one, zero, w2, torch.zeros(3, dtype=torch.float64), IMG[0])
    e, p, t = hand_scores(feats, image_rows, gen)
    assert AZ.az_expressivity(net, IMG, seed=7) == pytest.approx(e, rel=1e-9)
    assert AZ.az_progressivity(net, IMG, seed=7) == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert AZ.az_trainability(net, IMG, seed=7) == pytest.approx(t, rel=1e-9)


def test_deterministic_for_a_seed():
    net = tiny_cnn()
    first = [P.PROXIES[n](net, IMG, seed=3) for n in NAMES]
    assert [P.PROXIES[n](net, IMG, seed=3) for n in NAMES] == first
    assert AZ.az_trainability(net, IMG, seed=4) != first[2]


# ---- a tiny token network: embedding, then residual tanh blocks on (B, N, C) tokens ------------------------------


class ResTanh(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.fc(x))


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.blocks = nn.ModuleList([ResTanh(), ResTanh()])
        self.head = nn.Linear(4, 5)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


TOK = (torch.tensor([[0, 1, 2], [3, 4, 1]]), torch.tensor([[1, 2, 3], [4, 1, 0]]))


def test_token_scores_equal_hand_values():
    net = TinyLM().double()
    with torch.no_grad():
        net.emb.weight.copy_(fixed((5, 4), 10))
        for i, b in enumerate(net.blocks):
            b.fc.weight.copy_(fixed((4, 4), 11 + i))
            b.fc.bias.copy_(fixed((4,), 21 + i))
    f0 = fixed((5, 4), 10)[TOK[0]].requires_grad_(True)
    f1 = f0 + torch.tanh(f0 @ fixed((4, 4), 11).T + fixed((4,), 21))
    f2 = f1 + torch.tanh(f1 @ fixed((4, 4), 12).T + fixed((4,), 22))
    e, p, t = hand_scores([f0, f1, f2], token_rows, torch.Generator().manual_seed(0))
    got = AZ.az_nas_scores(net, TOK, seed=0, init=False)
    assert got["expressivity"] == pytest.approx(e, rel=1e-9)
    assert got["progressivity"] == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert got["trainability"] == pytest.approx(t, rel=1e-9)


# ---- special cases ----------------------------------------------------------------------------------------------


class Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.op = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def test_identity_blocks_score_minus_inf_trainability():
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(Skip(), Skip()), nn.Linear(4, 2)).double()
    batch = (fixed((6, 3), 4), torch.zeros(6, dtype=torch.long))
    got = AZ.az_nas_scores(net, batch, init=False)
    assert got["trainability"] == -math.inf  # official convention for an identity block
    assert got["progressivity"] == 0.0  # three copies of one feature
    assert got["expressivity"] == pytest.approx(
        3 * hand_entropy(F.linear(batch[0], net[0].weight, net[0].bias).detach().numpy())
    )


class DropToken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, 1:])


def test_not_applicable_cases():
    x = (fixed((4, 3), 0).float(), torch.zeros(4, dtype=torch.long))
    bare = nn.Sequential(nn.Linear(3, 2))  # no blocks, no activation modules
    for name in NAMES:
        with pytest.raises(P.ProxyNotApplicableError, match="neither"):
            P.PROXIES[name](bare, x)
    assert all(math.isnan(v) for v in P.score(bare, x, names=NAMES, device="cpu").values())

    one_act = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # fallback: one activation output
    assert math.isfinite(AZ.az_expressivity(one_act, x))
    for name in ["az_progressivity", "az_trainability"]:
        with pytest.raises(P.ProxyNotApplicableError, match="at least 2 stage features"):
            P.PROXIES[name](one_act, x)

    drop = nn.Sequential(nn.Embedding(5, 4), nn.Sequential(ResTanh(), DropToken()))  # token count changes
    with pytest.raises(P.ProxyNotApplicableError, match="positions"):
        AZ.az_trainability(drop, TOK)
    assert math.isfinite(AZ.az_progressivity(drop, TOK))


def test_stage_rule_on_ready_spaces():
    nb = tiny_space("nb201", num_classes=4)
    blocks = AZ.find_blocks(nb.extract(nb.max_arch()))
    assert len(blocks) == 5  # the cells and reduction blocks (the stem output is the first feature)
    mb = tiny_space("mobilenet", num_classes=4, image_size=16, strides=(2, 2))
    assert [type(b).__name__ for b in AZ.find_blocks(mb.extract(mb.max_arch()))] == ["MBConv"] * 4


# ---- rank aggregation -------------------------------------------------------------------------------------------


def test_aggregate_is_a_sum_of_log_ranks():
    table = {
        "expressivity": [3.0, 1.0, 2.0, 2.0],  # ranks 4, 1, 2.5, 2.5 (tie: average rank)
        "trainability": [0.5, math.nan, 0.7, -math.inf],  # NaN = -inf: ranks 3, 1.5, 4, 1.5
        "flops": [10.0, 10.0, 10.0, 10.0],  # all tied: 2.5 each
    }
    log = math.log
    expected = [
        log(4 / 4) + log(3 / 4) + log(2.5 / 4),
        log(1 / 4) + log(1.5 / 4) + log(2.5 / 4),
        log(2.5 / 4) + log(4 / 4) + log(2.5 / 4),
        log(2.5 / 4) + log(1.5 / 4) + log(2.5 / 4),
    ]
    assert AZ.az_aggregate(table) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="length"):
        AZ.az_aggregate({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="at least one"):
        AZ.az_aggregate({})


# ---- ready spaces ---------------------------------------------------------------------------------------------------



@pytest.mark.parametrize("name", list(SPACES))
def test_finite_on_every_ready_space(name):
    make, batch = SPACES[name]
    space = make()
    got = P.score(space, batch, arch=space.max_arch(), names=NAMES, device="cpu", strict=True)
    assert all(math.isfinite(v) for v in got.values()), got


def test_score_gives_az_nas_and_vkdnw_gaussian_inputs_by_default():
    space = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = torch.rand(4, 3, 8, 8) + 5.0, torch.tensor([0, 1, 2, 0])  # far from standard normal
    noise = P.paper_inputs("az_expressivity", (x, y), seed=3)
    assert torch.equal(noise[0], torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
    assert noise[1] is y and P.paper_inputs("nwot", (x, y), seed=3)[0] is x
    tokens = torch.randint(0, 10, (2, 5))
    assert P.paper_inputs("vkdnw", (tokens, y[:2]), seed=3)[0] is tokens  # token ids have no Gaussian counterpart
    names = ["az_expressivity", "nwot"]
    paper = P.score(space, (x, y), names=names, seed=3, device="cpu")
    given = P.score(space, (x, y), names=names, seed=3, device="cpu", inputs="batch")
    on_noise = P.score(space, noise, names=names, seed=3, device="cpu", inputs="batch")
    assert paper["az_expressivity"] == on_noise["az_expressivity"] != given["az_expressivity"]
    assert paper["nwot"] == given["nwot"]
    with pytest.raises(ValueError, match="'paper' or 'batch'"):
        P.score(space, (x, y), names=names, inputs="noise")  # type: ignore[arg-type]
