"""The example configs shipped in configs/ stay valid as the config schema evolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from supernet.config import PipelineConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates(path: Path) -> None:
    config = PipelineConfig.from_yaml(path)
    assert config.train.steps > 0
