"""Sub-supernets: partitioned spaces route each arch to its own weights; fewshot and gm splits; exact resume."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.space import memory_report, partition, partitions_of, split
from supernet.spaces import SpaceError, build_from_spec
from supernet.training.strategies.gm import best_cut, filter_agreement
from test_spaces import SMALL_KWARGS, example_input, warm_up_batchnorm
from test_train_common import conv_space, image_task, straight_and_resumed
from tiny_spaces import TINY, tiny_space

SPACES = {**{name: (lambda n=name: sn.spaces.build_space(n, **SMALL_KWARGS[n])) for name in SMALL_KWARGS},
          "user": lambda: conv_space(0)}


def _input(name: str, space: sn.SuperModule) -> torch.Tensor:
    return image_task().train_x[:2] if name == "user" else example_input(name, space)


def _split_first_decision(space: sn.SuperModule) -> tuple[str, list, list]:
    name, choice = next((n, c) for n, c in space.decisions.items() if len(c.options) > 1)
    a, b = [choice.options[0]], list(choice.options[1:])
    split(space, 0, name, [a, b])
    return name, a, b


@pytest.mark.parametrize("name", sorted(SPACES))
def test_each_arch_runs_on_its_partitions_own_weights_and_extracts_exactly(name: str) -> None:
    torch.manual_seed(0)
    space = SPACES[name]()
    x = _input(name, space)
    parts = partition(space, 3)
    decision, a, _ = _split_first_decision(space)
    with torch.no_grad():  # make the copies differ
        for p in parts.copies[1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    warm_up_batchnorm(space, x)
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(25)]:
        expected_partition = 0 if arch[decision] in a else 1
        assert parts.index_of(arch) == expected_partition
        space.set_arch(arch)
        with torch.no_grad():
            got = space(x)
            own = parts.copies[expected_partition](x)
            extracted = space.extract(arch)(x)
        torch.testing.assert_close(got, own, rtol=0, atol=0)
        assert (extracted - got).abs().max().item() <= 1e-5, arch
    report = memory_report(space)
    assert report["partitions"] == 3 and report["active_partitions"] == 2
    assert report["params"] == 3 * report["params_per_partition"]
    assert sn.cost.params(space) <= report["params_per_partition"]


def test_training_one_partition_never_changes_another_partitions_outputs() -> None:
    space = conv_space(0)
    parts = partition(space, 2)
    decision, a, b = _split_first_decision(space)
    x = image_task().train_x[:4]
    space.eval()
    in_a = [arch for arch in (space.sample(seed=s) for s in range(20)) if arch[decision] in a]
    in_b = [arch for arch in (space.sample(seed=s) for s in range(20)) if arch[decision] in b]
    assert in_a and in_b
    before = {}
    for arch in in_a:
        space.set_arch(arch)
        with torch.no_grad():
            before[str(arch)] = space(x).clone()
    opt = torch.optim.SGD(space.parameters(), lr=0.5)
    for arch in in_b:
        space.set_arch(arch)
        space.zero_grad(set_to_none=True)
        space(x).square().mean().backward()
        assert all(p.grad is None for p in parts.copies[0].parameters())
        opt.step()
    for arch in in_a:
        space.set_arch(arch)
        with torch.no_grad():
            torch.testing.assert_close(space(x), before[str(arch)], rtol=0, atol=0)


def test_partition_and_split_refuse_bad_input() -> None:
    space = conv_space(0)
    with pytest.raises(ValueError, match="needs a partitioned space"):
        split(space, 0, "op", [["relu"], ["tanh", "id"]])
    partition(space, 2)
    with pytest.raises(ValueError, match="already partitioned"):
        partition(space, 3)
    with pytest.raises(ValueError, match="unknown decision 'nope'"):
        split(space, 0, "nope", [["a"], ["b"]])
    with pytest.raises(ValueError, match="at least 2 non-empty disjoint groups"):
        split(space, 0, "op", [["relu"], ["tanh"]])  # "id" missing
    with pytest.raises(ValueError, match="not an active partition"):
        split(space, 1, "op", [["relu"], ["tanh", "id"]])
    with pytest.raises(ValueError, match="needs 2 free partitions, 1 left"):
        split(space, 0, "op", [["relu"], ["tanh"], ["id"]])
    split(space, 0, "op", [["relu"], ["tanh", "id"]])
    with pytest.raises(ValueError, match="needs 1 free partitions, 0 left"):
        split(space, 1, "op", [["tanh"], ["id"]])


def test_a_partitioned_spec_rebuilds_the_same_structure_and_weights() -> None:
    space = tiny_space("nb201")
    partition(space, 2)
    split(space, 0, "edge_1_0", [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]])
    assert space.spec["partitions"] == 2
    again = build_from_spec(json.loads(json.dumps(space.spec)))
    again.load_state_dict(space.state_dict())  # buffers carry the split
    assert partitions_of(again).describe() == partitions_of(space).describe()
    with pytest.raises(SpaceError, match="'partitions' must be a positive integer"):
        build_from_spec({**space.spec, "partitions": 0})


def _task(name: str):
    g = torch.Generator().manual_seed(0)
    if name == "gpt":
        return sn.training.make_task(sn.data.char_text("abcdefghij " * 40), block_size=8)
    size = 16 if name == "mobilenet" else 8
    x, y = torch.randn(32, 3, size, size, generator=g), torch.randint(0, 10, (32,), generator=g)
    return sn.training.ClassificationTask((x[:24], y[:24]), (x[24:], y[24:]))


@pytest.mark.parametrize("strategy", ["fewshot", "gm"])
@pytest.mark.parametrize("name", list(TINY))
def test_split_strategies_train_every_ready_space(name: str, strategy: str, tmp_path) -> None:
    space = tiny_space(name)
    options = {"inner": "pada"} if strategy == "fewshot" else {"splits": 2, "warmup": 0.3, "interval": 0.3}
    run = sn.train(space, _task(name), strategy, {"steps": 8, "batch_size": 4, "progress": False,
                                                  "strategy_options": options}, run_dir=tmp_path / "r", device="cpu")
    parts = partitions_of(run.space)
    assert parts is not None and int(parts.active.sum()) == parts.count
    assert all(torch.isfinite(torch.tensor(run.losses)))
    log = json.loads((tmp_path / "r" / "splits.json").read_text())["splits"]
    assert len(log) == (1 if strategy == "fewshot" else 2) and log == run.strategy.log
    loaded = sn.training.load_run(tmp_path / "r")  # rebuilt from the spec: same partitions, same weights
    assert partitions_of(loaded.space).describe() == parts.describe()


def test_fewshot_resumes_exactly_across_the_split(tmp_path, monkeypatch) -> None:
    config = {"steps": 12, "batch_size": 8, "lr": 5e-3, "checkpoint_every": 6, "log_every": 1, "progress": False,
              "deterministic": True, "seed": 3, "strategy_options": {"warmup": 0.5}}
    # killed at the start of step 6, the split step: the resumed run (from the step-6 checkpoint) splits
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "fewshot", config, kill_at=6)
    assert straight.strategy.log == resumed.strategy.log and straight.strategy.log[0]["step"] == 6
    assert partitions_of(straight.space).describe() == partitions_of(resumed.space).describe()


def test_gm_resumes_exactly_between_two_splits(tmp_path, monkeypatch) -> None:
    config = {"steps": 12, "batch_size": 8, "lr": 5e-3, "checkpoint_every": 4, "log_every": 1, "progress": False,
              "deterministic": True, "seed": 3,
              "strategy_options": {"splits": 2, "warmup": 0.25, "interval": 0.25}}  # splits at 3 and 6
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "gm", config, kill_at=4)  # resumes from step 4
    assert [r["step"] for r in straight.strategy.log] == [3, 6]
    assert straight.strategy.log == resumed.strategy.log


def test_best_cut_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (2, 3, 5):
        m = torch.rand(k, k, generator=g, dtype=torch.float64) * 2 - 1
        m = (m + m.T) / 2
        a, b, score = best_cut(m)
        brute = min(
            float(m[[i for i in range(k) if mask[i]]][:, [i for i in range(k) if not mask[i]]].mean())
            for mask in itertools.product([True, False], repeat=k)
            if any(mask) and not all(mask)
        )
        assert score == pytest.approx(brute, abs=1e-12)
        assert sorted(a + b) == list(range(k)) and 0 in a


def test_filter_agreement_compares_only_weights_every_option_reaches() -> None:
    shared = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    own = torch.ones(2, 2)
    grads = [[shared, own], [-shared, None], [shared * 3, torch.zeros(2, 2)]]  # weight 2 is not shared
    agreement = filter_agreement(grads)
    torch.testing.assert_close(agreement, torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=torch.float64))
    with pytest.raises(ValueError, match="nothing is shared"):
        filter_agreement([[None], [own]])


class _Planted(nn.Module):
    """A shared layer, then an op choice: options a, b pass its output on, c, d negate it (opposite gradients)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.op = sn.LayerChoice({"a": _Scale(1.0), "b": _Scale(1.5), "c": _Scale(-1.0), "d": _Scale(-1.5)},
                                 name="op")
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.op(self.shared(x))))


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


def test_gm_cuts_between_options_whose_gradients_oppose(tmp_path) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    task = sn.training.ClassificationTask((x[:48], y[:48]), (x[48:], y[48:]))
    run = sn.train(sn.SuperModule(_Planted()), task, "gm",
                   {"steps": 4, "batch_size": 16, "progress": False,
                    "strategy_options": {"splits": 1, "warmup": 0.5, "batches": 2}}, device="cpu")
    chosen = run.strategy.log[0]["chosen"]
    assert chosen["decision"] == "op" and chosen["groups"] == [["a", "b"], ["c", "d"]]
    assert chosen["score"] < 0


def test_split_strategies_refuse_bad_options() -> None:
    with pytest.raises(ValueError, match="wraps another"):
        sn.training.strategies.make_strategy("fewshot", {"inner": "gm"})
    with pytest.raises(ValueError, match="must be distinct decisions of the space; unknown: \\['nope'\\]"):
        sn.train(conv_space(0), image_task(), "fewshot",
                 {"steps": 2, "batch_size": 4, "progress": False, "strategy_options": {"decisions": ["nope"]}},
                 device="cpu")
    with pytest.raises(ValueError, match="do not fit in 10 steps"):
        sn.train(conv_space(0), image_task(), "gm",
                 {"steps": 10, "batch_size": 4, "progress": False,
                  "strategy_options": {"splits": 3, "warmup": 0.5, "interval": 0.3}}, device="cpu")
