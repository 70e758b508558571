"""The search as objects: the `ALGORITHMS` registry, `SearchSettings`, the `Searcher` (hooks, state dict, workers),
and the deprecated name ``strategy`` of the search algorithm (API, config key, CLI flag, old pareto.json)."""

from __future__ import annotations

import collections
import json
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from optuna.samplers import RandomSampler

import supernet as sn
from supernet.cli import build_parser, main
from supernet.config import PipelineConfig, SearchConfig, load_section, read_pipeline
from supernet.searching import (
    ALGORITHMS,
    SamplerRequest,
    Searcher,
    SearchResult,
    SearchSettings,
    arch_key,
    load_front,
    search,
)
from supernet.searching.report import front_table
from supernet.seeding import RESTART_SEED_STRIDE, restart_seed
from supernet.training import ConfigError
from tiny_spaces import TINY_GPT_RUN_YAML

torch.set_num_threads(1)
RUN_V1 = Path(__file__).parent / "data" / "run_v1"


def width_space(n: int = 6) -> sn.SuperModule:
    """One decision with ``n`` options: ``n`` distinct subnets."""
    return sn.SuperModule(sn.Linear(4, sn.Choice(list(range(1, n + 1)), name="width")))


class Counting:
    """Evaluator returning a synthetic loss and counting evaluations per subnet (picklable)."""

    def __init__(self, space: sn.SuperModule) -> None:
        self.space = space
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, arch: dict) -> dict:
        self.calls[arch_key(self.space, arch)] += 1
        return {"loss": 1.0 + arch["width"] / 10}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained GPT run made by ``supernet train`` (its config's search section uses the new key)."""
    root = tmp_path_factory.mktemp("run")
    cfg = root / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=root / "run", search="algorithm: random, trials: 3"))
    assert main(["train", str(cfg)]) == 0
    return root / "run"


@pytest.fixture
def toy_algorithm() -> Any:
    """A search algorithm registered from outside the package, as a user's module would (removed afterwards)."""
    built: list[SamplerRequest] = []

    @ALGORITHMS.register("toy_random")
    def toy_random(request: SamplerRequest) -> RandomSampler:
        """A toy: Optuna's random sampler, recording what it was asked for."""
        built.append(request)
        return RandomSampler(seed=request.seed)

    try:
        yield built
    finally:
        ALGORITHMS.remove("toy_random")


# ---------------------------------------------------------------- the registry


def test_the_built_in_algorithms_are_registered_with_a_description() -> None:
    assert sn.searching.ALGORITHMS is ALGORITHMS
    described = ALGORITHMS.describe()
    assert list(described)[:3] == ["random", "evolution", "nsga2"]
    assert all(text and "\n" not in text for text in described.values())
    with pytest.raises(ValueError, match="unknown search algorithm 'bayes'; expected one of random, evolution, nsga2"):
        ALGORITHMS.get("bayes")


def test_a_registered_algorithm_is_usable_from_the_api_the_config_and_the_cli(
    toy_algorithm: list, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = width_space()
    result = search(space, Counting(space), objectives=["loss"], algorithm="toy_random", trials=3, progress=False)
    assert result.algorithm == "toy_random" and len(result.entries) == 3
    assert toy_algorithm and toy_algorithm[0].trials == 3 and toy_algorithm[0].seed == 0

    assert load_section(SearchConfig, {"algorithm": "toy_random"}, "search config").algorithm == "toy_random"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    assert re.search(r"toy_random +A toy: Optuna's random sampler", capsys.readouterr().out)

    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=run, search="algorithm: toy_random, trials: 3"))
    assert main(["search", str(run), "--config", str(cfg), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((run / "search" / "pareto.json").read_text())["algorithm"] == "toy_random"
    assert main(["search", str(run), "--algorithm", "toy_random", "--trials", "4", "--no-progress"]) == 0
    assert main(["search", str(run), "--algorithm", "bayes", "--no-progress"]) == 2
    assert "unknown search algorithm 'bayes'" in capsys.readouterr().err


# ---------------------------------------------------------------- settings


def test_settings_validate_and_round_trip() -> None:
    settings = SearchSettings.create(objectives="loss,params", constraints="params <= 1234567", trials=3)
    assert [o.metric for o in settings.objectives] == ["loss", "params"]
    assert settings.constraints[0].bound == 1234567  # kept exactly (str(constraint) would round it)
    assert settings.max_total == 10 * 3 + 50 and settings.eval_options["max_batches"] == 8
    dumped = json.loads(json.dumps(settings.model_dump(mode="json")))
    assert SearchSettings.create(dumped) == settings
    assert pickle.loads(pickle.dumps(settings)) == settings
    for bad, where in [
        ({"trials": 0}, "'trials'"),
        ({"trials": True}, "'trials'"),
        ({"algorithm": "bayes"}, "'algorithm': unknown search algorithm"),
        ({"objectives": ["energy"]}, "'objectives': objective 'energy'"),
        ({"constraints": "params == 3"}, "'constraints'"),
        ({"trails": 3}, "unknown key 'trails'"),
    ]:
        with pytest.raises(ConfigError, match=where):
            SearchSettings.create(bad)


# ---------------------------------------------------------------- the Searcher


class Recording(Searcher):
    """A searcher that records its hooks."""

    calls: list[str]

    def before_search(self) -> None:
        self.calls = ["before"]
        super().before_search()

    def run_search(self) -> None:
        self.calls.append("run")
        super().run_search()

    def after_search(self) -> None:
        self.calls.append("after")
        super().after_search()


def test_search_runs_the_hooks_in_order_and_matches_sn_search(tmp_path: Path) -> None:
    space = width_space()
    settings = SearchSettings.create(objectives=["loss", "params"], algorithm="random", trials=4, progress=False)
    searcher = Recording(space, settings, evaluator=Counting(space))
    result = searcher.search()
    assert searcher.calls == ["before", "run", "after"] and searcher.result is result
    assert searcher.cost_model is not None and searcher.storage is None  # closed after the search
    same = search(space, Counting(space), objectives=["loss", "params"], algorithm="random", trials=4, progress=False)
    assert [e["arch"] for e in result.front] == [e["arch"] for e in same.front]
    assert searcher.done == {"trials": result.trials, "evaluations": 4, "distinct_archs": 4, "stopped": "budget"}


def test_state_dict_resumes_in_a_new_searcher_without_evaluating_twice(tmp_path: Path) -> None:
    space = width_space()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    ev = Counting(space)
    first = Searcher(space, {"objectives": ["loss"], "algorithm": "random", "trials": 3, "storage": storage,
                             "progress": False}, evaluator=ev)
    first.search()
    state = json.loads(json.dumps(first.state_dict()))  # JSON as it is
    assert state["done"]["distinct_archs"] == 3 and state["storage"] == storage

    again = Searcher(space, evaluator=ev)
    again.load_state_dict(state)
    assert again.settings == first.settings
    again.settings = again.settings.model_copy(update={"trials": 5})
    result = again.search()
    assert len(result.entries) == 5 and max(ev.calls.values()) == 1 and sum(ev.calls.values()) == 5
    with pytest.raises(ValueError, match="not a searcher state"):
        again.load_state_dict({"settings": {}})


def test_a_worker_gets_the_settings_and_the_run_directory_not_the_loaded_run(run_dir: Path, tmp_path: Path) -> None:
    run = sn.training.load_run(run_dir)
    searcher = Searcher(run, {"trials": 2, "workers": 2, "storage": f"sqlite:///{tmp_path / 's.db'}"})
    searcher.before_search()
    try:
        job = pickle.loads(pickle.dumps(searcher._for_worker()))
    finally:
        searcher.close()
    assert job.source == str(run_dir) and job.settings == searcher.settings
    assert job.study is None and job.storage is None and job.setup is None
    assert job.storage_url == searcher.storage_url


def test_restart_seeds_use_the_named_stride() -> None:
    assert RESTART_SEED_STRIDE == 7919 and restart_seed(3, 1, 2) == 3 + 1 + 7919 * 2


# ---------------------------------------------------------------- the old name: strategy


def test_sn_search_strategy_still_works_with_a_deprecation_warning() -> None:
    space = width_space()
    with pytest.warns(DeprecationWarning, match="'strategy' is now called 'algorithm'"):
        old = search(space, Counting(space), objectives=["loss"], strategy="random", trials=3, progress=False)
    new = search(space, Counting(space), objectives=["loss"], algorithm="random", trials=3, progress=False)
    assert old.algorithm == "random" and [e["arch"] for e in old.entries] == [e["arch"] for e in new.entries]
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="algorithm= only"):
        search(space, Counting(space), objectives=["loss"], algorithm="evolution", strategy="random", trials=3)
    with pytest.warns(DeprecationWarning, match="SearchResult.algorithm"):
        assert new.strategy == "random"


def test_config_key_strategy_is_read_as_algorithm() -> None:
    with pytest.warns(DeprecationWarning, match="'strategy' is now called 'algorithm'"):
        cfg = load_section(SearchConfig, {"strategy": "evolution"}, "search config")
    assert cfg.algorithm == "evolution" and "strategy" not in cfg.model_dump()
    with pytest.warns(DeprecationWarning):
        pipe = PipelineConfig.from_dict({"search": {"strategy": "random", "trials": 3}})
    assert pipe.search.algorithm == "random" and pipe.to_json()["search"]["algorithm"] == "random"
    with pytest.raises(ConfigError, match="'algorithm' only"):
        load_section(SearchConfig, {"strategy": "random", "algorithm": "nsga2"}, "search config")
    with pytest.warns(DeprecationWarning):
        assert read_pipeline(RUN_V1).search.algorithm == "random"  # a run saved by supernet 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_section(SearchConfig, {"algorithm": "random"}, "search config").algorithm == "random"


def test_cli_old_flag_and_old_config_key_work_with_a_note(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    assert main(["search", str(run), "--strategy", "evolution", "--population-size", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "--algorithm" in err
    assert json.loads((run / "search" / "pareto.json").read_text())["algorithm"] == "evolution"

    cfg = tmp_path / "old.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=run, search="strategy: evolution, population_size: 2, trials: 3"))
    assert main(["search", str(run), "--config", str(cfg), "--trials", "4", "--no-progress"]) == 0
    assert "note:" in capsys.readouterr().err
    assert main(["search", str(run), "--strategy", "random", "--algorithm", "nsga2", "--no-progress"]) == 2
    assert "--algorithm only" in capsys.readouterr().err


def test_an_old_pareto_json_is_read_with_its_strategy_as_algorithm(tmp_path: Path) -> None:
    front = load_front(RUN_V1)
    assert front["algorithm"] == front["strategy"] == "random"
    front_table(front)  # the report names the algorithm
    space = width_space()
    result = search(space, Counting(space), objectives=["loss"], algorithm="random", trials=2, out_dir=tmp_path,
                    progress=False)
    written = json.loads((tmp_path / "pareto.json").read_text())
    assert written["algorithm"] == "random" and "strategy" not in written and load_front(tmp_path) == written
    assert isinstance(result, SearchResult)
