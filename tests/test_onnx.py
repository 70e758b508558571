"""ONNX export: every ready space's extracted nets run in onnxruntime with PyTorch's outputs; the CLI flag; errors.

Needs the optional extra ``supernet[onnx]`` (onnx, onnxscript, onnxruntime); the tests that need it skip without it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import supernet as sn
from supernet.cli import main
from supernet.export import MissingExtraError, export, load, load_metadata, write_model
from supernet.spaces import SPACES, build_space
from tiny_spaces import TINY, TINY_GPT_RUN_YAML, tiny_space

HAS_EXPORTER = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_exporter = pytest.mark.skipif(
    not HAS_EXPORTER, reason="ONNX export needs onnx and onnxscript: pip install 'supernet[onnx]'"
)
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="the ONNX check needs onnxruntime: pip install 'supernet[onnx]'")

TOLERANCE = 1e-4


def tiny_kwargs(name: str) -> dict:
    kwargs = TINY.get(name)
    if kwargs is None:
        pytest.skip(f"ready space {name!r} has no tiny instance: add it to TINY in tests/tiny_spaces.py")
    return kwargs


def example(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    """An input batch for the tiny instance of ready space ``name``."""
    g = torch.Generator().manual_seed(seed)
    if name == "gpt":
        return torch.randint(0, TINY["gpt"]["vocab_size"], (batch, TINY["gpt"]["block_size"]), generator=g)
    size = tiny_kwargs(name).get("image_size", 16 if name == "darts" else 32)
    return torch.randn(batch, 3, size, size, generator=g)


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


@needs_exporter
@needs_ort
@pytest.mark.parametrize("name", sorted(set(SPACES) | set(TINY)))
def test_extracted_net_exports_and_onnxruntime_matches_pytorch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    space = build_space(name, **tiny_kwargs(name))
    space.train()  # move BatchNorm statistics away from 0/1 so that eval-mode equality means something
    with torch.no_grad():
        for seed in range(2):
            space.set_arch(space.sample(seed=10 + seed))
            space(example(name, 4, seed))
    space.eval()
    arch = space.sample(seed=1)
    out = export(
        space, tmp_path / name, arch=arch, example_input=example(name, 1), latency_device=None,
        evaluation={"bn_batches": 0}, format="onnx",
    )
    for file in ("model.onnx", "model.safetensors", "model.json", "arch.json", "README.md"):
        assert (out / file).is_file(), file
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    record = load_metadata(out)["onnx"]
    assert record["file"] == "model.onnx" and record["opset"] >= 17
    assert record["dynamic_axes"] == {"input": {"0": "batch"}, "output": {"0": "batch"}}
    assert record["max_abs_diff"] is not None and record["max_abs_diff"] <= TOLERANCE
    assert "ONNX: model.onnx" in (out / "README.md").read_text()
    model = load(out)  # the safetensors model still loads
    for batch in (1, 3):  # the batch dimension is dynamic
        x = example(name, batch, seed=5)
        with torch.no_grad():
            expected = model(x)
        got = run_onnx(out / "model.onnx", x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOLERANCE, name


@needs_exporter
@needs_ort
def test_cli_format_onnx_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    run_dir = tmp_path / "run"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=run_dir, search="algorithm: random, trials: 2"))
    assert main(["train", str(cfg)]) == 0
    assert main(["search", str(run_dir), "--trials", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "m")]) == 0
    assert "ONNX: model.onnx (opset" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["onnx"]["max_abs_diff"] <= TOLERANCE
    x = torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        expected = sn.load(tmp_path / "m")(x)
    assert (run_onnx(tmp_path / "m" / "model.onnx", x) - expected).abs().max().item() <= TOLERANCE
    # exporting again without ONNX leaves no stale model.onnx behind
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m")]) == 0
    assert not (tmp_path / "m" / "model.onnx").exists()
    assert "onnx" not in load_metadata(tmp_path / "m")


def small_gpt() -> sn.SuperModule:
    torch.manual_seed(0)
    return tiny_space("gpt")


def test_unknown_format_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = small_gpt()
    with pytest.raises(ValueError, match=r"unknown export format 'tflite'; expected one of safetensors, onnx"):
        export(space, tmp_path / "m", arch=space.min_arch(), latency_device=None, format="tflite")
    assert not (tmp_path / "m").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), "--format", "tflite"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_missing_exporter_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxscript" else real(n, *a))
    space = small_gpt()
    with pytest.raises(MissingExtraError, match=r"onnxscript.*pip install 'supernet\[onnx\]'"):
        export(space, tmp_path / "m", arch=space.min_arch(), latency_device=None, format="onnx")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=tmp_path / "run", search="algorithm: random, trials: 2"))
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--arch", json.dumps(space.min_arch()), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "ONNX export needs the package(s)" in err and "onnxscript" in err and "supernet[onnx]" in err


def test_onnx_needs_an_example_input(tmp_path: Path) -> None:
    if not HAS_EXPORTER:
        pytest.skip("ONNX export needs onnx and onnxscript: pip install 'supernet[onnx]'")
    space = small_gpt()
    with pytest.raises(ValueError, match="needs an example input"):
        export(space, tmp_path / "m", arch=space.min_arch(), latency_device=None, format="onnx")


@needs_exporter
def test_without_onnxruntime_the_file_is_written_and_the_check_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    space = small_gpt()
    out = export(
        space, tmp_path / "m", arch=space.min_arch(), example_input=example("gpt", 1), latency_device=None,
        format="onnx",
    )
    record = load_metadata(out)["onnx"]
    assert (out / "model.onnx").is_file()
    assert record["max_abs_diff"] is None and record["check"].startswith("skipped: onnxruntime is not installed")
    assert "skipped" in (out / "README.md").read_text()


@needs_exporter
@needs_ort
def test_new_weights_export_the_onnx_graph_again(tmp_path: Path) -> None:
    """`write_model` of a model with an ONNX record (what `supernet finetune` does) keeps model.onnx in step."""
    space = small_gpt()
    out = export(
        space, tmp_path / "m", arch=space.max_arch(), example_input=example("gpt", 1), latency_device=None,
        format="onnx",
    )
    model = load(out)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    meta = load_metadata(out)
    write_model(out, model, meta)
    x = example("gpt", 2, seed=3)
    with torch.no_grad():
        expected = load(out)(x)
    assert (run_onnx(out / "model.onnx", x) - expected).abs().max().item() <= TOLERANCE
    assert load_metadata(out)["onnx"]["max_abs_diff"] <= TOLERANCE
