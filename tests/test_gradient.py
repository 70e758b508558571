"""Differentiable NAS math: superposition vs the mixture of padded outputs, mixers, architect, selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet as sn
from supernet.gradient import (
    Architect,
    ArchParameters,
    DirichletMixer,
    GumbelMixer,
    Mix,
    SoftmaxMixer,
    perturbation_select,
    superposition,
)
from supernet.space import collect_choices
from tiny_spaces import tiny_space


def _w(n: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(torch.randn(n, generator=torch.Generator().manual_seed(seed)), 0)


def _pad_last(y: torch.Tensor, n: int) -> torch.Tensor:
    return F.pad(y, (0, n - y.shape[-1]))


def test_linear_out_features_superposition_equals_mixture_of_padded_outputs() -> None:
    torch.manual_seed(0)
    out = sn.Choice([3, 5, 8], name="out")
    lin = sn.Linear(6, out)
    x = torch.randn(4, 6)
    w = _w(3)
    with superposition({out: w}):
        y = lin(x)
    ref = sum(w[i] * _pad_last(F.linear(x, lin.weight[:o], lin.bias[:o]), 8) for i, o in enumerate(out.options))
    assert y.shape == (4, 8)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    with superposition({out: w}, mode="outputs"):  # the output-mixing baseline computes the same thing
        torch.testing.assert_close(lin(x), ref, atol=1e-6, rtol=1e-5)


def test_combi_superposition_of_two_choices_of_different_lengths() -> None:
    """A weight depending on two decisions gets the outer product of both weight vectors."""
    torch.manual_seed(1)
    embed = sn.Choice([4, 6, 8], name="embed")
    ratio = sn.Choice([2, 3], name="ratio")  # shorter option list than embed on purpose
    lin = sn.Linear(embed, embed * ratio)
    x = torch.randn(5, 8)
    we, wr = _w(3, 1), _w(2, 2)
    with superposition({embed: we, ratio: wr}):
        y = lin(x)
    ref = 0
    for i, e in enumerate(embed.options):
        for j, r in enumerate(ratio.options):
            h = e * r
            ref = ref + we[i] * wr[j] * _pad_last(F.linear(x[:, :e], lin.weight[:h, :e], lin.bias[:h]), 24)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_kernel_size_superposition_equals_mixture_of_outputs(depthwise: bool) -> None:
    torch.manual_seed(2)
    k = sn.Choice([1, 3, 5], name="k")
    c = sn.Choice([4, 6], name="c")
    conv = sn.Conv2d(c if depthwise else 3, c, k, depthwise=depthwise, stride=1)
    x = torch.randn(2, 6 if depthwise else 3, 9, 9)
    wk, wc = _w(3, 3), _w(2, 4)
    with superposition({k: wk, c: wc}):
        y = conv(x)
    ref = 0
    for i, kk in enumerate(k.options):
        for j, cc in enumerate(c.options):
            s = (5 - kk) // 2
            weight = (
                conv.weight[:cc, :, s : s + kk, s : s + kk]
                if depthwise
                else conv.weight[:cc, :3, s : s + kk, s : s + kk]
            )
            xin = x[:, :cc] if depthwise else x
            yo = F.conv2d(xin, weight, conv.bias[:cc], padding=kk // 2, groups=cc if depthwise else 1)
            ref = ref + wk[i] * wc[j] * F.pad(yo, (0, 0, 0, 0, 0, 6 - cc))
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_kernel_superposition_needs_automatic_padding() -> None:
    k = sn.Choice([3, 5], name="k")
    conv = sn.Conv2d(3, 4, k, padding=1)
    with superposition({k: _w(2)}), pytest.raises(ValueError, match="padding=None"):
        conv(torch.randn(1, 3, 8, 8))


def test_norm_and_embedding_layers_mix_exactly() -> None:
    torch.manual_seed(3)
    d = sn.Choice([3, 5, 7], name="d")
    w = _w(3, 5)
    bn, ln, emb = sn.BatchNorm2d(d), sn.LayerNorm(d), sn.Embedding(10, d)
    for m in (bn, ln):
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
    x4, x3, idx = torch.randn(4, 7, 3, 3), torch.randn(2, 4, 7), torch.randint(0, 10, (2, 4))
    with superposition({d: w}):
        y_bn, y_ln, y_emb = bn(x4), ln(x3), emb(idx)
    ref_bn = sum(
        w[i] * F.pad(F.batch_norm(x4[:, :c], None, None, bn.weight[:c], bn.bias[:c], True), (0, 0, 0, 0, 0, 7 - c))
        for i, c in enumerate(d.options)
    )
    ref_ln = sum(
        w[i] * _pad_last(F.layer_norm(x3[..., :c], (c,), ln.weight[:c], ln.bias[:c]), 7)
        for i, c in enumerate(d.options)
    )
    ref_emb = sum(w[i] * _pad_last(F.embedding(idx, emb.weight[:, :c]), 7) for i, c in enumerate(d.options))
    torch.testing.assert_close(y_bn, ref_bn, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_ln, ref_ln, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_emb, ref_emb, atol=1e-6, rtol=1e-5)


def _every_layer(d: sn.Choice) -> list[tuple[str, nn.Module, torch.Tensor, int | None]]:
    """One of each entangled layer sized by ``d`` (largest 7): name, layer, input, the input dim sized by ``d``."""
    torch.manual_seed(6)
    bn = sn.BatchNorm2d(d)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    x4 = torch.randn(3, 7, 4, 4)
    return [
        ("linear", sn.Linear(7, d), torch.randn(2, 7), None),
        ("conv", sn.Conv2d(7, d, 3), x4, None),
        ("depthwise", sn.Conv2d(d, d, sn.Choice([1, 3], name="k"), depthwise=True), x4, 1),
        ("bn", bn, x4, 1),
        ("bn_plain", sn.BatchNorm2d(d, affine=False), x4, 1),
        ("ln", sn.LayerNorm(d), torch.randn(2, 3, 7), -1),
        ("emb", sn.Embedding(10, d), torch.randint(0, 10, (2, 4)), None),
        ("pos", sn.PositionalEmbedding(5, d), torch.randn(2, 4, 7), -1),
        ("cls", sn.ClassToken(d), torch.randn(2, 4, 7), -1),
    ]


def test_every_layer_mixes_weights_and_outputs_alike_and_scales_a_hard_pick() -> None:
    d = sn.Choice([3, 5, 7], name="d")
    w = _w(3, 7).requires_grad_()
    for name, layer, x, in_dim in _every_layer(d):
        others = [c for c in collect_choices(layer).values() if c is not d]
        mixes = {c: _w(len(c.options), 8) for c in others}
        with superposition({d: w, **mixes}):
            by_weights = layer(x)
        with superposition({d: w, **mixes}, mode="outputs"):
            by_outputs = layer(x)
        if name == "pos":
            # Mixing weights adds the mixed table to the whole input; mixing outputs also masks the input.
            table = [layer.weight[:4, :c] for c in d.options]
            mixed_table = sum(w[i] * _pad_last(t, 7) for i, t in enumerate(table))
            torch.testing.assert_close(by_weights, x + mixed_table, atol=1e-5, rtol=1e-5)
            mixed_out = sum(w[i] * _pad_last(x[..., : t.shape[1]] + t, 7) for i, t in enumerate(table))
            torch.testing.assert_close(by_outputs, mixed_out, atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(by_weights, by_outputs, atol=1e-5, rtol=1e-5, msg=name)
        (grad,) = torch.autograd.grad(by_weights.square().sum(), w)
        assert grad.abs().sum() > 0, name
        # A hard pick computes only the picked size and scales it by the straight-through weight (2 here).
        x5 = x if in_dim is None else x.narrow(in_dim, 0, 5)
        for c in (d, *others):
            c.current = c.options[1]
        ref = layer(x5)
        hard_mixes = {d: Mix(torch.tensor([0.0, 2.0, 0.0]), 1), **{c: Mix(torch.tensor([0.0, 1.0]), 1) for c in others}}
        with superposition(hard_mixes):
            hard = layer(x5)
        if name == "pos":  # the position table is scaled, not the input it is added to
            expected = x5 + 2 * (ref - x5)
        elif name == "cls":  # the token is scaled, not the sequence it is prepended to
            expected = torch.cat([2 * ref[:, :1], ref[:, 1:]], 1)
        else:
            expected = 2 * ref
        torch.testing.assert_close(hard, expected, atol=1e-5, rtol=1e-5, msg=name)
        for c in (d, *others):
            c.current = c.largest()


def test_layer_choice_and_repeat_mix_outputs() -> None:
    torch.manual_seed(4)
    ops = {"a": nn.Linear(4, 4), "b": nn.Tanh(), "c": nn.Identity()}
    lc = sn.LayerChoice(ops, name="op")
    blocks = [nn.Linear(4, 4) for _ in range(3)]
    rep = sn.Repeat(blocks, sn.Choice([0, 2, 3], name="depth"))
    x = torch.randn(3, 4)
    w = _w(3, 6)
    with superposition({lc.choice: w, rep.depth: w}):
        y_lc, y_rep = lc(x), rep(x)
    torch.testing.assert_close(y_lc, w[0] * ops["a"](x) + w[1] * torch.tanh(x) + w[2] * x)
    h2 = blocks[1](blocks[0](x))
    torch.testing.assert_close(y_rep, w[0] * x + w[1] * h2 + w[2] * blocks[2](h2))


def test_hard_pick_runs_only_the_chosen_op_and_keeps_the_gradient() -> None:
    calls: list[str] = []

    class Op(nn.Module):
        def __init__(self, tag: str, scale: float) -> None:
            super().__init__()
            self.tag, self.scale = tag, scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(self.tag)
            return x * self.scale

    lc = sn.LayerChoice({"a": Op("a", 1.0), "b": Op("b", 3.0)}, name="op")
    alpha = torch.zeros(2, requires_grad=True)
    mix = GumbelMixer().sample(alpha, 1.0, torch.Generator().manual_seed(0))
    assert mix.index is not None and torch.equal(mix.weights.detach(), F.one_hot(torch.tensor(mix.index), 2).float())
    with superposition({lc.choice: mix}):
        y = lc(torch.ones(2))
    assert calls == [["a", "b"][mix.index]]
    y.sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0 and torch.isfinite(alpha.grad).all()


def user_space() -> sn.SuperModule:
    width = sn.Choice([4, 8], name="width")
    k = sn.Choice([3, 5], name="k")
    net = nn.Sequential(
        sn.Conv2d(3, width, k),
        sn.BatchNorm2d(width),
        nn.ReLU(),
        sn.Repeat([nn.Sequential(sn.Conv2d(width, width, 3), nn.ReLU()) for _ in range(2)], sn.Choice([1, 2])),
        sn.LayerChoice({"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}),
        nn.Flatten(),
        sn.Linear(width, 3),
    )
    return sn.SuperModule(net)


def test_one_hot_weights_equal_the_supernet_under_that_arch() -> None:
    torch.manual_seed(5)
    spaces = {
        "user": (user_space(), torch.randn(2, 3, 8, 8)),
        "gpt": (tiny_space("gpt"), torch.randint(0, 11, (2, 8))),
    }
    for name, (space, x) in spaces.items():
        for seed in range(3):
            arch = space.sample(seed=seed)
            space.set_arch(arch)
            ref = space(x)
            one_hot = {
                c: F.one_hot(torch.tensor(c.index(arch[n])), len(c.options)).float() for n, c in space.decisions.items()
            }
            space.set_arch(space.max_arch())
            with superposition(one_hot):  # the full (soft) superposition path with one-hot weights
                soft = space(x)
            space.set_arch(arch)
            with superposition({c: Mix(w, int(w.argmax())) for c, w in one_hot.items()}):  # hard path
                hard = space(x)
            torch.testing.assert_close(soft, ref, atol=1e-5, rtol=1e-5, msg=f"{name} soft")
            torch.testing.assert_close(hard, ref, atol=0, rtol=0, msg=f"{name} hard")


def test_mixers_sum_to_one_and_gumbel_is_one_hot() -> None:
    g = torch.Generator().manual_seed(0)
    alpha = torch.randn(5, requires_grad=True)
    for mixer in (SoftmaxMixer(), DirichletMixer(), GumbelMixer()):
        for progress in (0.0, 0.5, 1.0):
            m = mixer.sample(alpha, progress, g)
            assert torch.isclose(m.weights.sum(), torch.tensor(1.0), atol=1e-5)
            assert (m.weights >= -1e-6).all()
            assert torch.isclose(mixer.probs(alpha).sum(), torch.tensor(1.0), atol=1e-5)
            if mixer.hard:
                assert m.index is not None
                assert torch.equal(m.weights.detach(), F.one_hot(torch.tensor(m.index), 5).float())
            else:
                assert m.index is None
    # Dirichlet concentration elu(alpha) + 1; the anchor KL is 0 at alpha = 0 (Dir(1)) and positive elsewhere
    mixer = DirichletMixer(reg_scale=0.5)
    assert float(mixer.regularizer([torch.zeros(4)])) == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([1.0, -0.5, 0.2], requires_grad=True)
    reg = mixer.regularizer([a])
    reg.backward()
    assert float(reg.detach()) > 0 and a.grad.abs().sum() > 0


def test_gumbel_temperature_schedule_is_linear_between_the_configured_ends() -> None:
    mixer = GumbelMixer(tau_max=10.0, tau_min=0.1)
    assert mixer.temperature(0.0) == pytest.approx(10.0)
    assert mixer.temperature(1.0) == pytest.approx(0.1)
    assert mixer.temperature(0.5) == pytest.approx(5.05)
    assert mixer.temperature(2.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="tau_max >= tau_min"):
        GumbelMixer(tau_max=0.1, tau_min=1.0)


def _tiny_regression() -> tuple[sn.SuperModule, torch.Tensor, torch.Tensor]:
    torch.manual_seed(6)
    space = sn.SuperModule(
        nn.Sequential(
            nn.Linear(3, 8), nn.Tanh(), sn.LayerChoice([nn.Linear(8, 2), nn.Sequential(nn.Linear(8, 2), nn.Tanh())])
        )
    )
    return space, torch.randn(16, 3), torch.randn(16, 2)


def test_second_order_step_matches_the_exact_hessian_vector_product() -> None:
    space, x, y = _tiny_regression()
    alphas = ArchParameters(space, init_std=0.5, generator=torch.Generator().manual_seed(0))
    architect = Architect(alphas, SoftmaxMixer())
    params = list(space.parameters())

    def loss_fn(mixes: dict, batch: tuple) -> torch.Tensor:
        with superposition(mixes):
            return F.mse_loss(space(batch[0]), batch[1])

    xt, yt, xv, yv = x[:8], y[:8], x[8:], y[8:]
    xi = 0.1

    def mixes() -> dict:
        return alphas.sample(architect.mixer, 0.0, torch.Generator())

    architect.alpha_grads(loss_fn, mixes(), (xv, yv), second_order=True, train_batch=(xt, yt), weights=params, xi=xi)
    approx = alphas.parameters()[0].grad.clone()

    # exact: d/dalpha L_val(w - xi * grad_w L_train(w, alpha), alpha) by double backprop
    a = alphas.parameters()[0]
    choice = alphas.choices[next(iter(alphas.alpha))]
    from torch.func import functional_call

    names = [n for n, _ in space.named_parameters()]

    def val_after_unroll(alpha: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(alpha, 0)
        with superposition({choice: w}):
            lt = F.mse_loss(space(xt), yt)
        grads = torch.autograd.grad(lt, params, create_graph=True)
        unrolled = {n: p - xi * g for n, p, g in zip(names, params, grads, strict=True)}
        with superposition({choice: w}):
            return F.mse_loss(functional_call(space, unrolled, (xv,)), yv)

    exact = torch.autograd.grad(val_after_unroll(a), a)[0]
    torch.testing.assert_close(approx, exact, atol=1e-4, rtol=1e-2)
    # with xi = 0 the second-order gradient is the first-order one
    architect.alpha_grads(loss_fn, mixes(), (xv, yv), second_order=True, train_batch=(xt, yt), weights=params, xi=0)
    second = a.grad.clone()
    architect.alpha_grads(loss_fn, mixes(), (xv, yv))
    torch.testing.assert_close(second, a.grad)


def test_perturbation_selection_picks_the_clearly_better_option_even_against_alpha() -> None:
    """Target = tanh(x @ M); op 'good' computes it, the others do not. Alpha favours a bad op."""
    torch.manual_seed(7)
    m = torch.randn(4, 4)
    good = nn.Linear(4, 4, bias=False)
    good.weight.data = m.t().clone()
    space = sn.SuperModule(
        nn.Sequential(
            sn.LayerChoice({"zero": sn.blocks.Zero(), "good": good, "noise": nn.Linear(4, 4)}, name="op"), nn.Tanh()
        )
    )
    x = torch.randn(64, 4)
    y = torch.tanh(x @ m)
    alphas = ArchParameters(space, init_std=0.0)
    with torch.no_grad():
        alphas.alpha["op"].copy_(torch.tensor([2.0, 0.0, 1.0]))  # argmax would pick "zero"
    mixer = SoftmaxMixer()
    assert alphas.argmax_arch(space, mixer) == {"op": "zero"}

    def score(mixes: dict) -> float:
        with superposition(mixes):
            return -float(F.mse_loss(space(x), y))

    log: list = []
    finetuned: list = []
    arch = perturbation_select(space, alphas, mixer, score, finetune=lambda mixes: finetuned.append(mixes), log=log)
    assert arch == {"op": "good"}
    assert log[0]["picked"] == "good" and min(log[0]["scores"]) == log[0]["scores"][1]
    assert len(finetuned) == 1 and next(iter(finetuned[0].values())).index == 1  # settled decision is one-hot
