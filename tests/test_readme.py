"""The README's examples run: every ```python block (in order, one namespace) and every `supernet` command line.

The Python blocks run exactly as written except for the sizes below, shrunk so the test takes seconds; each
shrink asserts that its text is still in the README, so the examples cannot drift away from what is tested.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from supernet.cli import build_parser
from supernet.spaces import SPACES

README = Path(__file__).resolve().parents[1] / "README.md"

SHRINK = [
    ('config={"steps": 2000, "lr": 2e-3}', 'config={"steps": 3, "batch_size": 4, "lr": 2e-3, "progress": False}'),
    ("trials=60)", "trials=3, eval_batches=1, progress=False)"),
    ('config={"strategy_options": {"selection": "perturbation"}}',
     'config={"steps": 2, "batch_size": 2, "progress": False, "strategy_options": {"selection": "perturbation"}}'),
]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = blocks("python")
    assert len(code) >= 4
    source = "\n".join(code)
    for old, new in SHRINK:
        assert old in source, f"README no longer contains {old!r}: update SHRINK"
        source = source.replace(old, new)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    registered = set(SPACES)
    try:
        exec(compile(source, str(README), "exec"), namespace)
    finally:  # the README registers a space: keep the registry as other tests expect it
        for name in set(SPACES) - registered:
            del SPACES[name]
    net = namespace["net"]
    assert isinstance(net, torch.nn.Module) and not net.training
    assert (tmp_path / "runs" / "gpt" / "model" / "model.json").is_file()
    assert namespace["run"].final_arch is not None  # the DrNAS example selected an arch


def test_command_lines_parse() -> None:
    parser = build_parser()
    lines = [
        line.split("#")[0].strip()
        for block in blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith("supernet ")
    ]
    assert len(lines) >= 4
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        assert getattr(args, "func", None) is not None, line
