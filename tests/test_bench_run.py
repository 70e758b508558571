"""The CIFAR pipeline, `supernet bench nb201` end to end on a tiny setting (resume included), and ground truth."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import supernet as sn
from supernet.bench import (
    ImageSplits,
    RandomCropFlip,
    Table,
    build_groundtruth,
    choose_archs,
    cifar10_splits,
    load_table,
    preset_config,
    run_nb201_bench,
)
from supernet.bench.groundtruth import GroundTruthRecipe, reinitialize
from supernet.cli import main
from supernet.data import ArrayDataset
from supernet.spaces.nb201 import to_nb201_string

CLASSES = [f"c{i}" for i in range(10)]


def _tarball(path: Path, per_class: int = 4, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for c, name in enumerate(CLASSES):
            for i in range(per_class):
                pixels = np.clip(rng.normal(25 * c, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def _nb201_table(n: int = 12, seed: int = 0) -> Table:
    space = sn.spaces.nb201(C=1, N=1)
    rng = np.random.default_rng(seed)
    rows = {}
    for i in range(n):
        key = to_nb201_string(space.sample(seed=seed * 1000 + i))
        rows[key] = {
            "val_acc_200": float(rng.uniform(10, 92)),
            "flops": float(rng.uniform(10, 200)),
            "params": float(rng.uniform(0.1, 1.5)),
            "test_acc_200": float(rng.uniform(10, 94)),
        }
    return Table(rows, "nb201")


def _splits(n: int = 40, size: int = 8) -> ImageSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10
    train, hold = ArrayDataset(x, y, CLASSES).split(0.5, seed=0)
    return ImageSplits(
        train, hold, {"train_images": len(train), "holdout_images": len(hold), "size": size, "classes": CLASSES}
    )


# -- data ------------------------------------------------------------------------------------------------------


def test_random_crop_flip_is_seeded_and_shifts_windows() -> None:
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    aug = RandomCropFlip(padding=2)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    outs = {tuple(aug(x, torch.Generator().manual_seed(s))[0, 0].flatten().tolist()) for s in range(12)}
    assert len(outs) > 3  # different seeds give different crops/flips
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for img in range(2):
        windows = [padded[img, :, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        got = a[img]
        assert any(torch.equal(got, w) or torch.equal(got, w.flip(2)) for w in windows)
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x, torch.Generator()), x)
    with pytest.raises(ValueError, match="batch"):
        aug(x[0], torch.Generator())


def test_cifar_splits_hold_out_part_of_the_training_set(tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "cifar10-train.tar.gz", per_class=6)
    s = cifar10_splits(tmp_path, per_class=4, holdout_fraction=0.25, seed=0, cache_dir=tmp_path / "cache")
    assert len(s.train) == 30 and len(s.holdout) == 10
    assert torch.equal(torch.bincount(s.holdout.y, minlength=10), torch.ones(10, dtype=torch.long))
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape[1:] == (3, 8, 8)
    assert s.info["tarball"] == str(tar)
    small = cifar10_splits(tmp_path, size=4, holdout_fraction=0.5, cache_dir=tmp_path / "cache")
    assert small.train.x.shape[1:] == (3, 4, 4) and len(small.train) == 30
    task = s.task(padding=2)
    x, y = task.train_batch(5, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (5, 3, 8, 8) and y.shape == (5,)
    with pytest.raises(FileNotFoundError, match="cifar10-train"):
        cifar10_splits(tmp_path / "nowhere")


def test_choose_archs_adds_best_and_worst() -> None:
    table = _nb201_table(12)
    archs = choose_archs(table, 5, seed=0, metric="val_acc_200")
    roles = [a["role"] for a in archs]
    assert roles.count("sampled") + roles.count("best") + roles.count("worst") == len(archs)
    keys = [a["key"] for a in archs]
    assert table.best("val_acc_200") in keys and table.worst("val_acc_200") in keys
    assert len(set(keys)) == len(keys) and archs == choose_archs(table, 5, seed=0, metric="val_acc_200")
    assert sum(a["sampled"] for a in archs) == 5
    assert all(a["sampled"] for a in archs if a["role"] == "sampled")
    with pytest.raises(ValueError, match="--archs"):
        choose_archs(table, 13, 0, "val_acc_200")


# -- the benchmark ---------------------------------------------------------------------------------------------


def test_bench_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    table, data = _nb201_table(12), _splits()
    cfg = preset_config("tiny", steps=2, archs=4, device="cpu")
    out = tmp_path / "bench"
    logs: list[str] = []
    report = run_nb201_bench(cfg, out, table=table, data=data, progress=False, log=logs.append)
    for name in ("report.json", "summary.md", "scatter.png", "archs.json", "evaluations.json", "bench.json"):
        assert (out / name).is_file(), name
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"]["kendall_tau"]["value"] == pytest.approx(report["metrics"]["kendall_tau"]["value"])
    for name in ("kendall_tau", "sparse_kendall_tau", "spearman_rho", "precision@0.1", "regret"):
        est = report["metrics"][name]
        assert est["low"] <= est["value"] <= est["high"], name
    assert {"flops_tau", "params_tau", "readme_flops_tau_all"} <= set(report["floors"])
    # headline metrics use the uniform sample only; best and worst are reported beside them
    assert report["sampled_archs"] == 4
    assert (
        set(report["extremes"]) <= {"best", "worst"}
        and report["metrics_with_extremes"].keys() == report["metrics"].keys()
    )
    assert report["top_predicted"]["regret"] >= 0.0
    # memory: the supernet's parameters as counted from the space, and a positive peak RSS
    assert report["memory"]["supernet_params"] == sum(
        p.numel() for p in sn.spaces.nb201(C=cfg.C, N=cfg.N, num_classes=10).parameters()
    )
    assert report["memory"]["peak_rss_mib"] > 0
    assert len(report["archs"]) == len(json.loads((out / "archs.json").read_text())) >= 4
    assert all(0.0 <= a["predicted_accuracy"] <= 100.0 for a in report["archs"])
    summary = (out / "summary.md").read_text()
    assert "FLOPs only" in summary and "kendall_tau" in summary and "test set is never used" in summary

    # resume: drop one evaluation, run again: training is not repeated, only that arch is evaluated again
    evals = json.loads((out / "evaluations.json").read_text())
    dropped = next(iter(evals))
    del evals[dropped]
    (out / "evaluations.json").write_text(json.dumps(evals))
    logs.clear()
    again = run_nb201_bench(cfg, out, table=table, data=data, progress=False, log=logs.append)
    assert any(f"evaluating 1 of {len(report['archs'])}" in m for m in logs)
    assert again["timing"]["sessions"] == 2
    assert json.loads((out / "train" / "latest.json").read_text())["step"] == 2
    # a different setting in the same directory is refused
    with pytest.raises(ValueError, match="other settings"):
        run_nb201_bench(
            preset_config("tiny", steps=3, archs=4, device="cpu"),
            out,
            table=table,
            data=data,
            progress=False,
            log=logs.append,
        )


def test_bench_cli_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    _tarball(data_dir / "images" / "cifar10-train.tar.gz", per_class=4)
    nb = data_dir / "benchmarks" / "nb201"
    nb.mkdir(parents=True)
    (nb / "nasbench201_cifar10.json").write_text(json.dumps(_nb201_table(10).rows))
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "nb201",
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--archs",
            "3",
            "--data-dir",
            str(data_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "kendall_tau" in printed and "verdict" in printed
    assert json.loads((out / "report.json").read_text())["config"]["strategy"] == "uniform"
    code = main(
        ["bench", "nb201", "--preset", "tiny", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]
    )
    assert code == 2 and "not found" in capsys.readouterr().err


# -- ground truth ----------------------------------------------------------------------------------------------


def _tiny_vit() -> sn.SuperModule:
    return sn.spaces.vit(
        image_size=8,
        patch_size=4,
        in_channels=1,
        embed_dims=(8, 16),
        num_heads=(1,),
        mlp_ratios=(2,),
        depths=(1, 2),
        head_dim=8,
    )


def test_groundtruth_trains_from_scratch_and_resumes(tmp_path: Path) -> None:
    from supernet.training.tasks import ClassificationTask

    space = _tiny_vit()
    task = ClassificationTask(*sn.data.digits())
    recipe = GroundTruthRecipe(steps=3, batch_size=16, eval_max_batches=1, seed=0)
    out = tmp_path / "truth.csv"
    table = build_groundtruth(space, task, 3, recipe, out=out, device="cpu", progress=False, log=lambda m: None)
    assert len(table) == 3
    back = load_table(out)
    assert set(back.rows) == set(table.rows)
    for key, row in back.rows.items():
        arch = json.loads(key)
        assert space.validate(arch) == arch
        assert 0 <= row["val_accuracy"] <= 100 and row["val_loss"] > 0
        assert row["params"] == sn.cost.params(space.extract(arch))
    logs: list[str] = []
    build_groundtruth(space, task, 3, recipe, out=out, device="cpu", progress=False, log=logs.append)
    assert "0 of 3 archs to train" in logs[0]
    # fresh initialisation: the extracted net no longer holds the supernet's weights
    net = space.extract(space.max_arch())
    before = [p.detach().clone() for p in net.parameters()]
    reinitialize(net, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_groundtruth_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vit.json"
    kwargs = json.dumps(
        {"patch_size": 4, "embed_dims": [8, 16], "num_heads": [1], "mlp_ratios": [2], "depths": [1, 2], "head_dim": 8}
    )
    code = main(
        [
            "groundtruth",
            "vit",
            "--archs",
            "2",
            "--steps",
            "2",
            "--data",
            "digits",
            "--space-kwargs",
            kwargs,
            "--eval-batches",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = load_table(out)
    assert len(table) == 2 and table.metadata["recipe"]["steps"] == 2
    assert table.metadata["space"]["space"] == "vit"
    code = main(["groundtruth", "nope", "--out", str(tmp_path / "x.json")])
    assert code == 2 and "unknown space" in capsys.readouterr().err


def test_groundtruth_nb201_keys_are_nb201_strings(tmp_path: Path) -> None:
    space = sn.spaces.nb201(C=2, N=1)
    from supernet.training.tasks import ClassificationTask

    data = _splits(20, size=8)
    task = ClassificationTask(data.train, data.holdout, transform=lambda x: x.float() / 255)
    recipe = GroundTruthRecipe(steps=1, batch_size=4, seed=0)
    table = build_groundtruth(space, task, 2, recipe, device="cpu", progress=False, log=lambda m: None)
    assert table.space == "nb201" and all(k.startswith("|") for k in table.rows)
