"""A converted model goes through the whole pipeline: train (fine-tuning its own weights), search with constraints
relative to the original model, export (the user's classes with smaller layers), `sn.load`, the CLI
(`supernet convert` / `train` / `search` / `export`), and rebuilding by name from a run or model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import supernet as sn
from convert_models import ResBlock, SmallCNN, TinyGPT, small_cnn, tiny_gpt
from supernet.cli import main
from supernet.converting import SPEC_NAME, ModelFactoryError, converted
from supernet.searching import Constraint, SearchSettings, parse_constraints
from supernet.spaces import SpaceError, build_from_spec
from supernet.training import load_run, make_task

CNN = "convert_models:small_cnn"
GPT = "convert_models:tiny_gpt"


def _layer_types(net: nn.Module) -> set[str]:
    return {f"{type(m).__module__}.{type(m).__name__}" for m in net.modules()}


def _user_classes_only(net: nn.Module) -> bool:
    return all(t.startswith(("torch.nn.", "convert_models.")) for t in _layer_types(net))


# ---------------------------------------------------------------------------------------------- relative constraints


def test_relative_constraints_parse_resolve_and_round_trip() -> None:
    a, b, c = parse_constraints(["params <= 50%", "flops<=0.6x", "latency < 2e-3"])
    assert (a.metric, a.op, a.fraction, a.resolved, str(a)) == ("params", "<=", 0.5, False, "params <= 50%")
    assert (b.fraction, str(b)) == (0.6, "flops <= 60%") and c.fraction is None and c.resolved
    assert parse_constraints({"params": "25%"})[0].fraction == 0.25
    with pytest.raises(ValueError, match="not known here"):
        a.violation(1.0)
    r = a.resolve(1000.0)
    assert (r.bound, r.reference, r.satisfied(500), r.satisfied(501)) == (500.0, 1000.0, True, False)
    assert str(r) == "params <= 50%" and r.describe() == "params <= 50% (= 500)"
    for text, match in [("loss <= 50%", "loss has no reference"), ("accuracy >= 0.9x", "no reference"),
                        ("params <= -5%", "fraction >= 0")]:
        with pytest.raises(ValueError, match=match):
            parse_constraints([text])
    settings = SearchSettings.create(constraints=[r, c])
    again = SearchSettings.model_validate(settings.model_dump(mode="json"))
    assert again.constraints == [r, c]
    # a record written before relative constraints existed still loads
    old = SearchSettings.model_validate({"constraints": [{"metric": "params", "op": "<=", "bound": 5.0}]})
    assert old.constraints == [Constraint("params", "<=", 5.0)]


def test_search_of_a_converted_space_resolves_against_the_original_model() -> None:
    model, x = small_cnn()
    space = sn.convert(model, x)
    original_params, original_flops = sn.cost.params(model), sn.cost.flops(model, x)
    # no example_input given: the converted space keeps the model's
    result = sn.search(space, objectives=["params", "flops"], constraints=["params <= 50%", "flops <= 0.6x"],
                       trials=6, algorithm="random", progress=False)
    p, f = result.constraints
    assert (p.reference, f.reference) == (original_params, original_flops)
    assert p.bound == 0.5 * original_params and f.bound == pytest.approx(0.6 * original_flops)
    assert result.front and all(e["metrics"]["params"] <= p.bound and e["metrics"]["flops"] <= f.bound
                                for e in result.front)
    with pytest.raises(ValueError, match="no arch can satisfy"):
        sn.search(space, objectives=["params"], constraints="params <= 1%", trials=2, progress=False)


# ---------------------------------------------------------------------------------------------- models by name


def test_a_named_model_records_a_spec_that_rebuilds_the_sorted_space() -> None:
    space = converted(CNN, widths=[0.5, 1.0], sort="l1")
    assert space.spec == {"space": SPEC_NAME, "kwargs": {
        "model": CNN, "widths": [0.5, 1.0], "depth": True, "group_widths": None, "pin": [], "exclude": [],
        "divisor": 1, "sort": "l1", "model_kwargs": None}}
    again = build_from_spec(json.loads(json.dumps(space.spec)))
    assert again.choices == space.choices
    state, state2 = space.state_dict(), again.state_dict()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    model, x = small_cnn()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x), atol=1e-5, rtol=1e-5)
    plain = sn.convert(CNN, widths=(0.5, 1.0))  # sn.convert takes the name too (no sorting)
    assert plain.spec["kwargs"]["sort"] is None and plain.spec["kwargs"]["model"] == CNN


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("convert_models:not_declared", "not declared as a model factory"),
        ("os:getcwd", "not declared as a model factory"),
        ("convert_models:nope", "has no attribute"),
        ("no_such_module_xyz:f", "cannot import module"),
        ("just_a_name", "expected 'module:function'"),
    ],
)
def test_a_model_name_must_declare_a_model_factory(name: str, match: str) -> None:
    with pytest.raises(ModelFactoryError, match=match):
        converted(name)
    with pytest.raises(SpaceError, match=match):
        build_from_spec({"space": SPEC_NAME, "kwargs": {"model": name}})


# ---------------------------------------------------------------------------------------------- Python pipeline


@pytest.mark.parametrize("strategy", ["uniform", "sandwich"])
def test_cnn_trains_searches_exports_and_loads(tmp_path: Path, strategy: str) -> None:
    data = sn.data.digits()
    task = make_task(data)
    space = converted(CNN, sort="l1")
    before = {k: v.clone() for k, v in space.state_dict().items()}
    run = sn.train(space, task, strategy, {"steps": 3, "batch_size": 16, "lr": 1e-3, "progress": False},
                   run_dir=tmp_path / "run", device="cpu")
    assert run.spec["space"] == SPEC_NAME
    moved = [k for k, v in space.state_dict().items() if not torch.equal(v, before[k])]
    assert moved  # the model's own (pretrained) weights were fine-tuned
    loaded = load_run(tmp_path / "run")
    state = space.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.space.state_dict().items())  # rebuilt by name

    reference = sn.cost.params(small_cnn()[0])
    result = sn.search(tmp_path / "run", task=task, objectives=["loss", "params"], constraints="params <= 60%",
                       trials=4, algorithm="random", progress=False, device="cpu", eval_batches=2)
    assert result.constraints[0].reference == reference
    assert result.front and all(e["metrics"]["params"] <= 0.6 * reference for e in result.front)
    pareto = json.loads((tmp_path / "run" / "search" / "pareto.json").read_text())
    assert pareto["constraints"] == [f"params <= 60% (= {0.6 * reference:,.6g})"]

    out = sn.export(tmp_path / "run", tmp_path / "model", constraints="params <= 60%", task=task)
    net = sn.load(out)
    assert isinstance(net, SmallCNN) and isinstance(net.blocks[0], ResBlock) and _user_classes_only(net)
    arch = json.loads((out / "arch.json").read_text())
    assert sn.cost.params(net) <= 0.6 * reference and net.head.in_features < 32
    expected = loaded.space.extract(arch)
    expected.load_state_dict(net.state_dict())  # BN statistics recalibrated at export
    x = task.example_input(4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected.eval()(x))


def test_transformer_pipeline_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "conv"
    code = main(["convert", GPT, "--out", str(out), "--widths", "0.5,1.0", "--sort", "activation",
                 "--data", '{"name": "shakespeare"}'])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "width groups" in printed and "blocks.depth" in printed and "largest = the model" in printed
    spec = json.loads((out / "space.json").read_text())
    assert spec["space"] == SPEC_NAME and spec["kwargs"]["sort"] == "activation"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["space"]["name"] == SPEC_NAME and config["run_dir"] == str(out / "run")
    assert "width groups" in (out / "report.txt").read_text()

    assert main(["train", str(out / "config.yaml"), "--steps", "2", "--device", "cpu", "--no-progress"]) == 0
    run_dir = out / "run"
    assert json.loads((run_dir / "run.json").read_text())["space"]["space"] == SPEC_NAME
    assert main(["search", str(run_dir), "--trials", "3", "--algorithm", "random", "--eval-batches", "1",
                 "--constraint", "flops <= 0.8x", "--no-progress", "--device", "cpu"]) == 0
    model, x = tiny_gpt()
    flops = sn.cost.flops(model, torch.zeros(1, 16, dtype=torch.long))
    front = json.loads((run_dir / "search" / "pareto.json").read_text())["front"]
    assert front and all(e["metrics"]["flops"] <= 0.8 * flops for e in front)
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "model"), "--constraint", "flops <= 80%"]) == 0
    net = sn.load(tmp_path / "model")
    assert isinstance(net, TinyGPT) and _user_classes_only(net)
    assert net.head.weight is net.tok.weight  # the tie survives export and load
    arch = json.loads((tmp_path / "model" / "arch.json").read_text())
    space = load_run(run_dir).space.eval()
    space.set_arch(arch)
    with torch.no_grad():
        torch.testing.assert_close(net(x), space(x), atol=1e-5, rtol=1e-5)


def test_cli_convert_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", "convert_models:not_declared", "--out", str(tmp_path / "a")]) == 2
    assert "not declared as a model factory" in capsys.readouterr().err
    assert main(["convert", CNN, "--out", str(tmp_path / "b"), "--data", '{"name": "nope"}']) == 2
    assert "data" in capsys.readouterr().err and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):
        main(["convert", CNN, "--out", str(tmp_path / "c"), "--widths", "half"])
