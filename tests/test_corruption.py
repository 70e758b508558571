"""Corruption suite: every file kind a run, search, export or benchmark writes, damaged every way we can think of.

Each damaged file must give the library's own error (`FileFormatError`, or ``FileNotFoundError``) naming the file;
nothing inside it is ever executed (the pickles below would create a marker file if unpickled); a flipped bit in
the tensor data of a weights file is caught by its SHA-256.
"""

from __future__ import annotations

import io
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import supernet as sn
from supernet.bench import nb201 as bench_nb201
from supernet.bench.tables import TableError, load_table
from supernet.cli import main
from supernet.config import read_pipeline
from supernet.export import load_metadata, select_arch
from supernet.files import FileFormatError, write_json
from supernet.predictors import GBDTPredictor
from supernet.predictors.io import load_predictor, save_predictor
from supernet.searching import load_front
from supernet.training import load_run
from supernet.training.checkpoint import latest_checkpoint, load_checkpoint

TINY_GPT = {"block_size": 8, "embed_dims": (8, 16), "num_heads": (1, 2), "mlp_ratios": (2,), "depths": (1, 2),
            "head_dim": 4}
CHOICES = {"a": [1, 2, 3], "b": ["x", "y"]}


class _Bomb:
    """Unpickling this creates ``marker``: the suite asserts it never exists."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with checkpoints, a search, an exported model, benchmark state, a table and a predictor."""
    root = tmp_path_factory.mktemp("pristine")
    torch.manual_seed(0)
    space = sn.spaces.gpt(**TINY_GPT)
    config = {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "progress": False}
    run = sn.train(space, sn.data.shakespeare(), "uniform", config, run_dir=root / "run", device="cpu")
    sn.search(run, algorithm="random", trials=3, eval_batches=1, eval_batch_size=8, device="cpu", progress=False)
    sn.export(root / "run", root / "model", arch="best", latency_device=None)
    write_json(root / "run" / "pipeline.json", {"data": {"name": "shakespeare"}, "space": {"name": "gpt"}})
    bench = root / "bench"
    write_json(bench / "archs.json", [{"key": "|nor_conv_3x3~0|", "role": "sampled", "sampled": True}])
    write_json(bench / "timing.json", {"train_s": 1.0, "eval_s": 2.0, "total_s": 3.0, "sessions": 1})
    write_json(bench / "evaluations.json", {"k": {"accuracy": 50.0, "loss": 1.0, "count": 10}})
    write_json(root / "table.json", {"{\"a\": 1}": {"acc": 0.5}, "{\"a\": 2}": {"acc": 0.7}})
    archs = [{"a": a, "b": b} for a in CHOICES["a"] for b in CHOICES["b"]]
    save_predictor(GBDTPredictor(CHOICES, n_models=1, rounds=5).fit(archs, [a["a"] for a in archs]), root / "p.json")
    return root


def _resume(root: Path) -> None:
    load_checkpoint(latest_checkpoint(root / "run"))  # type: ignore[arg-type]


def _checkpoint(root: Path) -> Path:
    return latest_checkpoint(root / "run").relative_to(root)  # type: ignore[union-attr]


# file kind -> (path relative to the pristine root (or a function of it), the library call that reads it)
KINDS: dict[str, tuple[Any, Callable[[Path], Any]]] = {
    "run.json": ("run/run.json", lambda r: load_run(r / "run")),
    "latest.json": ("run/latest.json", lambda r: load_run(r / "run")),
    "checkpoint state.json": (lambda r: _checkpoint(r) / "state.json", _resume),
    "checkpoint weights": (lambda r: _checkpoint(r) / "weights.safetensors", lambda r: load_run(r / "run")),
    "checkpoint state tensors": (lambda r: _checkpoint(r) / "state.safetensors", _resume),
    "final weights": ("run/weights.safetensors", lambda r: sn.training.load_run(_no_checkpoints(r))),
    "pipeline.json": ("run/pipeline.json", lambda r: read_pipeline(r / "run")),
    "pareto.json": ("run/search/pareto.json", lambda r: load_front(r / "run")),
    "study.db": (
        "run/search/study.db",
        lambda r: sn.search(r / "run", algorithm="random", trials=3, device="cpu", progress=False),
    ),
    "model.json": ("model/model.json", lambda r: load_metadata(r / "model")),
    "model weights": ("model/model.safetensors", lambda r: sn.load(r / "model")),
    "arch.json": ("model/arch.json", lambda r: select_arch(r / "run", str(r / "model" / "arch.json"))),
    "bench archs.json": ("bench/archs.json", lambda r: bench_nb201._read_json(r / "bench" / "archs.json", None)),
    "bench timing.json": ("bench/timing.json", lambda r: bench_nb201._read_json(r / "bench" / "timing.json", None)),
    "bench evaluations.json": (
        "bench/evaluations.json",
        lambda r: bench_nb201._read_json(r / "bench" / "evaluations.json", None),
    ),
    "table": ("table.json", lambda r: load_table(r / "table.json")),
    "predictor": ("p.json", lambda r: load_predictor(r / "p.json")),
}
SAFETENSORS = {"checkpoint weights", "checkpoint state tensors", "final weights", "model weights"}
SQLITE = {"study.db"}


def _no_checkpoints(root: Path) -> Path:
    (root / "run" / "latest.json").unlink(missing_ok=True)
    shutil.rmtree(root / "run" / "checkpoints", ignore_errors=True)
    return root / "run"


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def _variant(kind: str, name: str, data: bytes, marker: Path) -> bytes | None:
    """The damaged content (None: the variant does not apply to this file kind, see `_applies`)."""
    if name == "truncated":
        return data[: len(data) // 2]
    if name == "empty":
        return b""
    if name == "flip_header":
        if kind in SQLITE:
            return _flip(data, 3)  # inside the "SQLite format 3" magic
        return _flip(data, 9) if kind in SAFETENSORS else _flip(data, 0)  # safetensors: inside its JSON header
    if name == "flip_data":
        if kind in SQLITE:
            return None  # SQLite pages have no checksum; damage there is SQLite's to report
        # safetensors: the last byte of tensor data (caught by the SHA-256); JSON: its closing bracket
        return _flip(data, len(data) - 1) if kind in SAFETENSORS else _flip(data, len(data.rstrip()) - 1)
    if name == "wrong_shape":
        if kind in SAFETENSORS or kind in SQLITE:
            return None
        return b'{"a": 1}' if kind == "bench archs.json" else b"[1, 2, 3]"
    if name == "non_utf8":
        return b"\xff\xfe{\x00\x80garbage\xc3"
    if name == "pickle":
        return pickle.dumps({"weights": _Bomb(marker)})
    if name == "torch_save":
        buf = io.BytesIO()
        torch.save({"w": torch.ones(3), "bomb": _Bomb(marker)}, buf)
        return buf.getvalue()
    raise AssertionError(name)


VARIANTS = ["truncated", "empty", "flip_header", "flip_data", "wrong_shape", "non_utf8", "pickle", "torch_save"]


def _applies(kind: str, variant: str) -> bool:
    if variant == "wrong_shape":
        return kind not in SAFETENSORS and kind not in SQLITE  # no JSON inside to shape wrongly
    return not (variant == "flip_data" and kind in SQLITE)  # SQLite pages carry no checksum of their own


@pytest.mark.parametrize(("kind", "variant"), [(k, v) for k in KINDS for v in VARIANTS if _applies(k, v)])
def test_damaged_file_gives_own_error_naming_it(kind: str, variant: str, pristine: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    where, read = KINDS[kind]
    path = root / (where(root) if callable(where) else where)
    marker = tmp_path / "EXECUTED"
    damaged = _variant(kind, variant, path.read_bytes(), marker)
    assert damaged is not None
    read(root)  # the pristine copy reads fine
    path.write_bytes(damaged)
    with pytest.raises((FileFormatError, TableError)) as info:  # TableError: a table's rows are wrong
        read(root)
    assert str(path) in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert not marker.exists(), "a damaged file was unpickled"


def test_flipped_weight_bit_is_caught_by_the_checksum(pristine: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    path = root / "model" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(_flip(data, len(data) - 5))
    with pytest.raises(FileFormatError, match="SHA-256"):
        sn.load(root / "model")


def test_torn_metrics_line_is_skipped_but_garbage_log_is_an_error(pristine: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    log = root / "run" / "metrics.jsonl"
    records = load_run(root / "run").history
    log.write_bytes(log.read_bytes() + b'{"step": 9, "lo')  # a kill in the middle of a write
    assert load_run(root / "run").history == records
    log.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(FileFormatError, match=r"metrics\.jsonl"):
        load_run(root / "run")


@pytest.mark.parametrize(
    ("command", "damaged"),
    [
        (["export", "{run}", "--out", "{root}/m2"], "run/run.json"),
        (["search", "{run}", "--trials", "3", "--no-progress", "--device", "cpu"], "run/search/study.db"),
        (["finetune", "{root}/model", "--steps", "1", "--no-progress"], "model/model.safetensors"),
    ],
)
def test_cli_reports_damage_in_one_line_without_traceback(
    command: list[str], damaged: str, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    (root / damaged).write_bytes(b"\x00\x01garbage")
    assert main([c.format(run=root / "run", root=root) for c in command]) == 2
    err = capsys.readouterr().err
    assert str(root / damaged) in err and "Traceback" not in err
