"""Every training-free proxy on NAS-Bench-201 (CIFAR-10), against the VKDNW paper's table, plus supernet hybrids.

What it measures
----------------
Each proxy of `supernet.proxies` (the older ones and the new ZiCo, MeCo, SWAP, VKDNW, AZ-NAS) scores a seeded
uniform sample of ``--archs`` (default 1,000) NAS-Bench-201 archs, each on a freshly initialised network (`score`
re-initialises from the seed), and is ranked against the table's ``test_acc_200`` and ``val_acc_200``: Kendall tau
with a 95 % bootstrap CI (archs resampled, paired), Spearman rho, and seconds per arch. Before the new rows mean
anything, the script reproduces the published rows it can (FLOPs and params from the table; NASWOT and Jacov
computed here) and says plainly whether each lies within 0.03 tau of the published figure (MET / NOT MET), so the
new rows compare like with like. Then the hybrids: the label-free log-rank sum (`supernet.estimate.Estimator`,
``mode="rank"``) over AZ-NAS's own set, VKDNW_agg's set and all new proxies + FLOPs, each with and without a trained
supernet's accuracy (``--supernet-run``); each signal of the best label-free set removed in turn, and each alone;
and the same with LightGBM on ``k`` = 50 and 100 labelled archs (``mode="gbdt"``) drawn from a labelled pool that
is disjoint from the evaluated archs.

Protocol and settings (each with its source)
--------------------------------------------
- Network: the NAS-Bench-201 benchmark network, C=16 channels, N=5 cells per stage, 10 classes, 32x32 inputs
  (Dong & Yang, ICLR 2020; the VKDNW and AZ-NAS NB201 code use the same ``TinyNetwork``). ``--C/--N/--size`` exist
  for tests. Proxies run on CPU with ``--threads 1`` unless ``--device cuda``.
- Data: one CIFAR-10 *training* minibatch per seed, drawn from the JPEG tarball ``images/cifar10-train.tar.gz``
  (a class-balanced random subset of ``ceil(B_max / 10)`` images per class, shuffled, seed = the proxy seed),
  CIFAR-10 mean/std normalisation, no augmentation. A proxy with a smaller batch takes the first ``B`` images of
  the same draw. ``--inputs table`` (the default: the published protocol) instead feeds Gaussian noise
  (``torch.randn``, seed = the proxy seed) to the proxies that the VKDNW table computed on noise (`TABLE_NOISE`: its
  ``tss_general_.py`` passes no loader to them; AZ-NAS's own ``tss_general.ipynb`` likewise gives real images only
  to ZiCo, SNIP, GraSP, TE-NAS and GradSign); ``--inputs cifar`` gives CIFAR-10 images to every proxy. The inputs
  matter: on the first 200 sampled archs AZ-NAS's progressivity ranks with tau 0.53 on noise and 0.13 on CIFAR-10
  images. The cache keeps both: a noise value is stored as ``<proxy>@noise`` (`cache_name`), so the two settings
  share every proxy that sees the same CIFAR-10 batch in both.
- Batch size: 64 (VKDNW's Table 1 protocol: ``tss_general_.py --batch_size 64``; AZ-NAS's NB201 code too), except
  where the proposing paper's code uses another count (`PAPER_BATCH`: ZiCo 2 x 64, MeCo 1, SWAP 16);
  `BATCH_NOTES` lists the papers whose own setting differs from the table's (NASWOT: 128). ``--uniform-batch``
  gives every proxy ``--batch-size``.
- Seeds: ``--seeds`` (default 0): each seed draws its own minibatch and initialisation. With several seeds every
  figure is the mean of the per-seed figures (the VKDNW table averages 5 runs), and the CI resamples archs jointly
  for all seeds.
- Sample: ``--archs`` archs and a labelled pool of ``max(--labels)`` archs from one seeded permutation of the
  15,625 table archs (``--sample-seed``): the evaluated archs are its first ``--archs``, the pool its last
  ``max(--labels)`` (so both are disjoint, and a larger ``--archs`` or ``--labels`` extends them without changing
  what is cached). The few-label rows use the first ``k`` pool archs. Proxies are computed for pool archs too
  (the GBDT needs their features).
- Published column (`PUBLISHED`): Tybl & Neumann, "Training-free Neural Architecture Search through Variance of
  Knowledge of Deep Network Weights", CVPR 2025, Table 1, CIFAR-10 columns (KT, SPR): all 15,625 archs, against
  the NATS-Bench ``cifar10`` test accuracy after 200 epochs, mean of 5 runs, each proxy re-run with its authors'
  code (read from the official repository, github.com/ondratybl/VKDNW: ``table1.png``, ``NB201/tss_general_.py``,
  ``NB201/paper_preparation.ipynb``). Ours use 1,000 sampled archs; the CI says whether a gap is sampling noise.
- Non-finite proxy values (NaN where a proxy does not apply or fails, -inf by the AZ-NAS convention) rank lowest,
  tied (the AZ-NAS / VKDNW convention); the report counts them per signal.
- Supernet signal (``--supernet-run DIR``, a finished ``supernet bench nb201`` output directory, e.g.
  ``runs/ranking_matrix-cpu/pada-s0``): the accuracy of each arch with inherited weights, evaluated exactly as that
  bench evaluates (its `BenchConfig` from ``bench.json``, its data split, `supernet.training.evaluate_many` with its
  BN-recalibration and evaluation settings); archs the bench itself evaluated are checked to give the same numbers.
  Two seeds: ``--seeds 0,1 --supernet-run runs/ranking_matrix-cpu/pada-s0,runs/ranking_matrix-cpu/pada-s1`` pairs
  proxy seed s with supernet run s (each hybrid's seed-s prediction combines them); figures are means over seeds.

The run outgrows one working session on a 2-core machine, so its cache is kept in the repository:
``benchmarks/results/proxies_nb201/`` (``--out`` there; ``cache.jsonl``, ``settings.json``, the latest
``report.md``) holds every value computed so far with the default settings, and each session continues it.

Several cores: ``--shard 0/2`` and ``--shard 1/2`` in two processes with the same ``--out`` split the proxies'
archs between them (each appends whole lines to the one cache; each one's report covers the cache as it was when that
process started plus its own results, and ``--report-only`` afterwards covers everything).

Resuming: every result is appended to ``OUT/cache.jsonl`` as it is computed (per arch and seed: each proxy's value
and seconds; per arch: the supernet's accuracy). Re-running continues; ``--proxies`` picks what to compute (the
report also shows every other proxy the cache holds for all evaluated archs); a later run with more proxies, seeds,
archs or labels computes only what is missing. ``OUT/settings.json`` pins what the cached values depend on
(network, input size, batch sizes); another setting needs another ``--out`` (``--inputs`` does not: see Data).
The report is printed and written atomically to ``OUT/report.md`` and ``OUT/report.json``.

Cost (measured with one thread on a 2-core machine busy with other jobs, C=16, N=5, 32x32, seconds per arch and
seed; 4 archs, vkdnw 2): snip 1.0, plain 0.9, grad_norm 0.9, grasp 3.7, fisher 1.1, synflow 0.2, gradsign 2.3,
nwot 0.9, jacov 0.8, zen 1.4, l2_norm 0.1, params 0.1, flops 0.5, zico 2.2, meco 0.1, swap 1.9, az_expressivity
0.6, az_progressivity 0.6, az_trainability 1.2: about 21 s per arch for all of them; vkdnw alone 15 s (its
Jacobian by reverse mode vmapped over the samples, the `auto` choice at batch 64; forward mode took 65 s on the same
arch side by side, the per-logit reverse loop 350 s). The supernet signal: 1.7 s per arch. With 1,000 + 100 archs
and one seed: about 6.5 h without vkdnw, plus about 4.5 h for vkdnw, plus 30 min of supernet evaluation, plus about
30 min of bootstrap for the report (``--resamples 200`` for a quicker look). Run the cheap proxies first, then
vkdnw (it resumes), or vkdnw on a GPU.

    # the full run, cheap proxies first (1,000 + 100 archs, supernet hybrids), then vkdnw
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxies_nb201.py --data-dir ../shared/data \\
        --supernet-run runs/ranking_matrix-cpu/pada-s0 --exclude vkdnw
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxies_nb201.py --data-dir ../shared/data \\
        --supernet-run runs/ranking_matrix-cpu/pada-s0  # adds vkdnw
    # every proxy on CIFAR-10 images instead (shares the cache; the noise proxies get their own values)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxies_nb201.py --data-dir ../shared/data --inputs cifar
    # a tiny end-to-end check at the full network size (about a minute; 8 labels: LightGBM needs > 6 to split)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxies_nb201.py --archs 8 --labels 8 --proxies nwot,jacov,zico \\
        --out /tmp/proxies_nb201-tiny --resamples 200
    # the report from what is cached, computing nothing
    .venv/bin/python benchmarks/proxies_nb201.py --report-only

Kendall tau is only worth something above the free floor: ranking by FLOPs (the table's ``FLOPs (table)`` row on
the same archs; 0.577 against test accuracy over all 15,625 archs in this table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supernet.bench.metrics import bootstrap_ci, kendall_tau, spearman_rho
from supernet.bench.nb201 import BenchConfig, find_nb201_table, preset_config
from supernet.bench.tables import Table, load_nb201
from supernet.files import read_json, write_json, write_text
from supernet.proxies import PROXIES, score

FORMAT = "proxies-nb201"
VERSION = 1
TARGETS = {"test": "test_acc_200", "valid": "val_acc_200"}
"""Ground truth of the table: the mean 200-epoch test accuracy and the validation accuracy."""

NEW_PROXIES = ("zico", "meco", "swap", "vkdnw", "az_expressivity", "az_progressivity", "az_trainability")
"""The proxies newer than the NASLib set (2023-2025); every other registered proxy counts as old."""

DEFAULT_BATCH = 64
PAPER_BATCH: dict[str, tuple[int, str]] = {
    "zico": (128, "ZiCo compares gradients across two minibatches of 64 (compute_zico_score, batch_iter=2, in the "
             "VKDNW / AZ-NAS code; ZiCo's --maxbatch 2); our zico splits one batch of 128 into those halves"),
    "meco": (1, "MeCo scores one image (HamsterMimi/MeCo correlation/NAS_Bench_201.py --batch_size 1)"),
    "swap": (16, "SWAP's correlation script uses --input_samples 16 (it also averages 32 re-initialisations; "
             "here one per seed)"),
}
"""Proxies whose authors' code uses another batch than the table's 64: ``{proxy: (images, source)}``."""

BATCH_NOTES: dict[str, str] = {
    "nwot": "64 as in the VKDNW table (which fed it Gaussian noise); the NASWOT paper used 128 CIFAR images",
    "jacov": "64 CIFAR images as in the VKDNW table; NASWOT v1 (Mellor et al. 2020) used 128",
    "vkdnw": "64, the official NB201 run (Gaussian noise; 128 weights, one per parameter tensor). Differs: ours runs "
             "in eval mode with the fresh network's running BN statistics (0 and 1); the official TinyNetwork is "
             "built with track_running_stats=False, so its eval mode normalises with batch statistics (measured on "
             "two archs: 0.63 vs 1.02 and 0.017 vs 0.67)",
    "synflow": "the batch only sets the input shape: SynFlow feeds an all-ones input",
    "zen": "the batch only sets the input shape: Zen-score draws Gaussian inputs",
    "flops": "one sample of the batch (FLOPs of one forward pass)",
    "params": "no data", "l2_norm": "no data",
}
"""Where a paper's own setting differs from the protocol used here (which follows the table), or needs a word."""

TABLE_NOISE = ("nwot", "az_expressivity", "az_progressivity", "az_trainability", "vkdnw", "synflow", "zen",
               "grad_norm")
"""Proxies that the VKDNW table computed on Gaussian-noise inputs (``--inputs table`` does the same)."""
NOISE_SUFFIX = "@noise"
RESULTS = Path(__file__).resolve().parent / "results" / "proxies_nb201"
"""The kept cache and latest report (in the repository: the full run outgrows one working session)."""


def cache_name(name: str, inputs: str) -> str:
    """The name proxy ``name``'s values are cached under: ``<name>@noise`` where ``--inputs table`` feeds it noise."""
    base = name.removesuffix("_single")  # vkdnw_single derives from vkdnw and sees its inputs
    return name + NOISE_SUFFIX if inputs == "table" and base in TABLE_NOISE else name

NO_GRAD: dict[str, str] = {
    "vkdnw": "its forward-mode Jacobian (its fallback where a network cannot be vmapped) builds and keeps an "
             "autograd graph per weight column when grad mode is on: about 1.3 GB per image of the batch at C=16, "
             "N=5 (10.4 GB at batch 8, so an out-of-memory kill at 64); under torch.no_grad() memory stays flat and "
             "the value is identical (the vmapped reverse mode is a function transform: no_grad does not reach it)",
}
"""Proxies scored under ``torch.no_grad()`` (same value, bounded memory), with the reason."""

PUBLISHED_SOURCE = (
    "Tybl & Neumann, CVPR 2025 (VKDNW), Table 1, NAS-Bench-201 CIFAR-10: Kendall tau (KT) and Spearman rho (SPR) "
    "over all 15,625 archs against the NATS-Bench 'cifar10' test accuracy (200 epochs), mean of 5 runs; every "
    "proxy re-run with its authors' code at batch 64, 32x32, C=16, N=5 (github.com/ondratybl/VKDNW)"
)
PUBLISHED: dict[str, tuple[float | None, float | None]] = {
    "table_flops": (0.623, 0.799),
    "flops": (0.623, 0.799),
    "grad_norm": (0.328, 0.438),
    "grasp": (0.352, 0.505),
    "snip": (0.431, 0.591),
    "synflow": (0.561, 0.758),
    "jacov": (0.616, 0.800),
    "nwot": (0.571, 0.762),
    "zen": (0.102, 0.103),
    "gradsign": (None, 0.765),  # the table copies GradSign's paper, which reports rho only
    "zico": (0.607, 0.802),
    "vkdnw_single": (0.618, 0.815),
    "az_nas": (0.712, 0.892),
    "vkdnw_agg": (0.750, 0.919),
}
"""``{our signal: (tau, rho)}`` of `PUBLISHED_SOURCE`, against test accuracy."""
PUBLISHED_MODEL_DRIVEN = {"name": "(VKDNW+ZCS+GRAF)_m", "tau": 0.859, "rho": 0.971,
                          "note": "the table's best model-driven ranking: a model trained on labelled archs, with "
                                  "zero-cost scores and graph features as inputs"}
REPRODUCE = ("table_flops", "table_params", "nwot", "jacov")
"""The published rows reproduced first (FLOPs/params: the table's values; NASWOT, Jacov: computed here)."""
TOLERANCE = 0.03

HYBRID_SETS: dict[str, tuple[str, list[str]]] = {
    "az_nas": ("AZ-NAS as published: expressivity, progressivity, trainability, FLOPs",
               ["az_expressivity", "az_progressivity", "az_trainability", "table_flops"]),
    "vkdnw_agg": ("VKDNW_agg: VKDNW_single, FLOPs, expressivity, trainability, Jacov (paper_preparation.ipynb)",
                  ["vkdnw_single", "table_flops", "az_expressivity", "az_trainability", "jacov"]),
    "new_all": ("all new proxies + FLOPs", [*NEW_PROXIES, "table_flops"]),
    "fast_all": ("AZ-NAS's three terms, MeCo, NASWOT, Jacov and FLOPs: about 4 CPU-s per arch together (no "
                 "VKDNW, ZiCo or SWAP)",
                 ["az_expressivity", "az_progressivity", "az_trainability", "meco", "nwot", "jacov", "table_flops"]),
}
"""The label-free sets: ``{name: (description, signals)}``; each also runs with the supernet's accuracy added."""

SIGNAL_LABELS = {"table_flops": "FLOPs (table)", "table_params": "params (table)", "supernet": "supernet accuracy",
                 "vkdnw_single": "vkdnw_single (#tensors + vkdnw)"}


# ------------------------------------------------------------------ archs, data, cache


def sample_archs(table: Table, archs: int, pool: int, seed: int) -> tuple[list[str], list[str]]:
    """``(evaluated, labelled pool)`` table keys from one seeded permutation: its first ``archs`` and last ``pool``.

    Raises:
        ValueError: the two do not fit in the table without overlapping.
    """
    keys = sorted(table.rows)
    if archs < 2 or pool < 0 or archs + pool > len(keys):
        raise ValueError(f"need 2 <= --archs and --archs + max(--labels) <= {len(keys)}, got {archs} + {pool}")
    perm = np.random.default_rng(seed).permutation(len(keys))
    return [keys[i] for i in perm[:archs]], [keys[i] for i in perm[::-1][:pool]]


def batch_size_of(name: str, args: argparse.Namespace) -> int:
    """The minibatch size proxy ``name`` gets (`PAPER_BATCH`, else ``--batch-size``)."""
    if args.uniform_batch or name not in PAPER_BATCH:
        return args.batch_size
    return PAPER_BATCH[name][0]


def cifar_images(data_dir: str | Path, n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` CIFAR-10 training images (normalised, ``size x size``) and labels: a seeded class-balanced draw."""
    from supernet.bench.cifar import find_tarball
    from supernet.data import image_tarball, images_to_tensor, normalize_images

    data = image_tarball(find_tarball(data_dir), subset=max(1, math.ceil(n / 10)), seed=seed, progress=False)
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))[:n].numpy()
    x = normalize_images(images_to_tensor(data.images[order]))
    if x.shape[-1] != size:  # tests only: the benchmark runs at the stored 32x32
        mode = "area" if size < x.shape[-1] else "bilinear"
        x = torch.nn.functional.interpolate(x, size=(size, size), mode=mode)
    return x.contiguous(), torch.as_tensor(data.labels[order], dtype=torch.long)


class Batches:
    """The minibatch of each proxy for each seed, built on first use (images loaded once per seed)."""

    def __init__(self, args: argparse.Namespace, names: Sequence[str]) -> None:
        self.args = args
        self.largest = max((batch_size_of(n, args) for n in names), default=args.batch_size)
        self._images: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if seed not in self._images:
            self._images[seed] = cifar_images(self.args.data_dir, self.largest, seed, self.args.size)
        b = batch_size_of(name, self.args)
        x, y = self._images[seed]
        if self.args.inputs == "table" and name in TABLE_NOISE:
            gen = torch.Generator().manual_seed(seed)
            return torch.randn(b, *x.shape[1:], generator=gen), torch.randint(0, 10, (b,), generator=gen)
        return x[:b], y[:b]


class Cache:
    """The JSONL cache: per (arch, seed) proxy values and seconds; per (supernet run, arch) its evaluation.

    Lines are appended as results come; later lines add to earlier ones; a torn last line is skipped.
    Values are written with Python's JSON (NaN and +-Infinity kept as such).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proxy: dict[tuple[str, int], dict[str, float]] = {}
        self.seconds: dict[tuple[str, int], dict[str, float]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.supernet: dict[tuple[str, str], dict[str, float]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._add(rec)

    def _add(self, rec: Mapping[str, Any]) -> None:
        if rec.get("kind") == "proxy":
            key = (rec["arch"], int(rec["seed"]))
            self.proxy.setdefault(key, {}).update({k: float(v) for k, v in rec["values"].items()})
            self.seconds.setdefault(key, {}).update(rec.get("seconds", {}))
            for name, err in rec.get("errors", {}).items():
                self.errors.setdefault(name, {})[rec["arch"]] = err
        elif rec.get("kind") == "supernet":
            self.supernet[(rec["run"], rec["arch"])] = dict(rec["result"])

    def append(self, rec: dict[str, Any]) -> None:
        """Write one record (flushed) and add it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        self._add(rec)


# ------------------------------------------------------------------ computing


def compute_proxies(
    args: argparse.Namespace, table: Table, keys: Sequence[str], names: Sequence[str], cache: Cache
) -> int:
    """Score every missing (arch, seed, proxy) and cache it; returns how many proxy values were computed."""
    from supernet.spaces.nb201 import nb201

    todo = [(k, s) for s in args.seeds for k in keys
            if any(cache_name(n, args.inputs) not in cache.proxy.get((k, s), {}) for n in names)]
    if not todo:
        return 0
    space = nb201(C=args.C, N=args.N, num_classes=10)
    batches = Batches(args, names)
    device = args.device
    bar = None
    if args.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="proxies", unit="arch")
    computed = 0
    for key, seed in todo:
        arch = table.arch(key)
        have = cache.proxy.get((key, seed), {})
        values: dict[str, float] = {}
        seconds: dict[str, float] = {}
        errors: dict[str, str] = {}
        for name in names:
            if cache_name(name, args.inputs) in have:
                continue
            batch = batches(name, seed)
            t0 = time.perf_counter()
            try:
                value = score_one(space, batch, arch, name, seed, device)
            except Exception as err:  # one failing (arch, proxy) must not end a long run
                value, errors[name] = math.nan, f"{type(err).__name__}: {err}"[:300]
                print(f"warning: {name} failed on {key} (seed {seed}): {errors[name]}", file=sys.stderr)
            stored = cache_name(name, args.inputs)
            seconds[stored] = time.perf_counter() - t0
            values[stored] = float(value)
            if name in errors:
                errors[stored] = errors.pop(name)
            computed += 1
            if name == "vkdnw":  # VKDNW_single: the paper's size term (#parameter tensors) in front of vkdnw
                tensors = len(list(space.extract(arch).parameters()))
                single = cache_name("vkdnw_single", args.inputs)
                values[single] = tensors + float(value) / math.log(10)
                seconds[single] = seconds[stored]
        cache.append({"kind": "proxy", "arch": key, "seed": seed, "values": values, "seconds": seconds,
                      **({"errors": errors} if errors else {})})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return computed


def score_one(space: Any, batch: tuple[torch.Tensor, torch.Tensor], arch: Mapping[str, Any], name: str, seed: int,
              device: str) -> float:
    """``score(...)[name]``: one proxy on a fresh network; `NO_GRAD` proxies run under ``torch.no_grad()``.

    A `NO_GRAD` proxy that needs gradients after all (vkdnw's reverse-mode path, chosen for small batches) raises
    a RuntimeError under ``no_grad``; it is then scored again with gradients on.
    """
    if name in NO_GRAD:
        try:
            with torch.no_grad():
                return score(space, batch, arch=arch, names=[name], seed=seed, device=device, inputs="batch")[name]
        except RuntimeError:
            pass
    return score(space, batch, arch=arch, names=[name], seed=seed, device=device, inputs="batch")[name]


def bench_config(run_dir: Path) -> BenchConfig:
    """The `BenchConfig` a ``supernet bench nb201`` run was made with (its ``bench.json``)."""
    saved = read_json(run_dir / "bench.json", dict[str, Any], "NB201 bench settings")
    fields = set(BenchConfig.__dataclass_fields__)
    return preset_config(saved.get("preset", "cpu"), **{k: v for k, v in saved.items() if k in fields})


def compute_supernet(
    args: argparse.Namespace, run_dir: Path, table: Table, keys: Sequence[str], cache: Cache
) -> tuple[int, dict[str, Any]]:
    """Evaluate every missing arch with the trained supernet of ``run_dir`` (one of ``--supernet-run``), as its
    bench does.

    Returns how many archs were evaluated and a description of the run (settings, and the check against the
    bench's own ``evaluations.json`` on shared archs).
    """
    cfg = bench_config(run_dir)
    run_id = str(run_dir.resolve())
    info: dict[str, Any] = {"run": str(run_dir), "strategy": cfg.strategy, "preset": cfg.preset, "C": cfg.C,
                            "N": cfg.N, "size": cfg.size, "bn_images": cfg.bn_images, "metric": "accuracy (%)"}
    report = run_dir / "report.json"
    if report.is_file():
        tau = read_json(report, dict[str, Any], "NB201 bench report").get("metrics", {}).get("kendall_tau", {})
        info["bench_tau_val"] = tau.get("value")
    todo = [k for k in keys if (run_id, k) not in cache.supernet]
    computed = 0
    if todo:
        from supernet.bench.cifar import cifar10_splits
        from supernet.training import evaluate_many, load_run

        data = cifar10_splits(args.data_dir, size=None if cfg.size == 32 else cfg.size, per_class=cfg.per_class,
                              holdout_fraction=cfg.holdout_fraction, seed=cfg.data_seed)
        task = data.task(augment=True, padding=cfg.padding)
        space = load_run(run_dir / "train", device=args.device).space
        bar = None
        if args.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="supernet", unit="arch")
        for lo in range(0, len(todo), cfg.eval_chunk):
            chunk = todo[lo : lo + cfg.eval_chunk]
            t0 = time.perf_counter()
            results = evaluate_many(space, [table.arch(k) for k in chunk], task, split="val",
                                    batch_size=cfg.eval_batch_size, max_batches=cfg.eval_max_batches,
                                    bn_batches=cfg.bn_batches, bn_batch_size=cfg.bn_batch_size, seed=cfg.seed,
                                    device=None)
            each = (time.perf_counter() - t0) / len(chunk)
            for k, r in zip(chunk, results, strict=True):
                cache.append({"kind": "supernet", "run": run_id, "arch": k,
                              "result": {"accuracy": 100.0 * float(r["accuracy"]), "loss": float(r["loss"]),
                                         "seconds": each}})
            computed += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    info["check"] = check_against_bench(run_dir, run_id, keys, cache)
    return computed, info


def check_against_bench(run_dir: Path, run_id: str, keys: Sequence[str], cache: Cache) -> dict[str, Any]:
    """Our supernet accuracies vs the bench's ``evaluations.json`` on the archs both evaluated (should agree)."""
    path = run_dir / "evaluations.json"
    if not path.is_file():
        return {"shared_archs": 0, "note": "the bench has no evaluations.json"}
    theirs = read_json(path, dict[str, dict[str, float]], "NB201 bench evaluations")
    shared = [k for k in keys if k in theirs and (run_id, k) in cache.supernet]
    diffs = [abs(cache.supernet[(run_id, k)]["accuracy"] - theirs[k]["accuracy"]) for k in shared]
    return {"shared_archs": len(shared), "max_abs_diff": max(diffs) if diffs else None}


# ------------------------------------------------------------------ figures


def finite_fill(values: np.ndarray) -> np.ndarray:
    """Non-finite values ranked lowest, tied (NaN and -inf below every finite value; +inf above); a copy."""
    v = np.asarray(values, dtype=float).copy()
    ok = np.isfinite(v)
    if not ok.any():
        return np.zeros_like(v)
    lo, hi = v[ok].min(), v[ok].max()
    v[np.isposinf(v)] = hi + 1.0
    v[np.isnan(v) | np.isneginf(v)] = lo - 1.0
    return v


def figures(pred: np.ndarray, true: np.ndarray, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Kendall tau (mean over seeds, with a 95 % bootstrap CI over archs) and Spearman rho of ``pred`` (S, n).

    Each seed's row is ranked against ``true``; the CI resamples archs with the same indices for every seed.
    """
    pred = np.stack([finite_fill(p) for p in np.atleast_2d(pred)])
    true = np.asarray(true, dtype=float)
    taus = [kendall_tau(p, true) for p in pred]
    rhos = [spearman_rho(p, true) for p in pred]

    def mean_tau(idx: np.ndarray, _: np.ndarray) -> float:
        i = idx.astype(int)
        return float(np.mean([kendall_tau(p[i], true[i]) for p in pred]))

    index = np.arange(len(true), dtype=float)
    est = bootstrap_ci(mean_tau, index, index, n_resamples=resamples, seed=seed).to_dict()
    est["value"] = float(np.mean(taus))
    return {"tau": est, "rho": float(np.mean(rhos)), "tau_per_seed": taus, "rho_per_seed": rhos}


def nan_to_none(x: float | None) -> float | None:
    """None for a missing or non-finite number."""
    return None if x is None or not math.isfinite(x) else float(x)


class Signals:
    """Every signal's values: ``values(name, keys)`` is an ``(S, len(keys))`` array (S = seeds, or 1)."""

    def __init__(self, table: Table, cache: Cache, seeds: Sequence[int], proxies: Sequence[str],
                 supernet_runs: Sequence[str] | str | None, inputs: str = "table") -> None:
        self.table, self.cache, self.seeds, self.inputs = table, cache, list(seeds), inputs
        self.proxies = [*proxies, *(["vkdnw_single"] if "vkdnw" in proxies else [])]
        runs = [supernet_runs] if isinstance(supernet_runs, str) else list(supernet_runs or [])
        # one supernet run per proxy seed (row s of every signal belongs together), or one run for all of them
        self.run_ids = [str(Path(r).resolve()) for r in runs]

    def names(self) -> list[str]:
        """Every available signal, table ones first."""
        return ["table_flops", "table_params", *self.proxies, *(["supernet"] if self.run_ids else [])]

    def values(self, name: str, keys: Sequence[str]) -> np.ndarray:
        """``(S, n)`` values of signal ``name`` for ``keys`` (NaN where not cached)."""
        if name in ("table_flops", "table_params"):
            return self.table.values(name.removeprefix("table_"), keys)[None, :]
        if name == "supernet":
            return np.array([[self.cache.supernet.get((run, k), {}).get("accuracy", math.nan) for k in keys]
                             for run in self.run_ids])
        stored = cache_name(name, self.inputs)
        return np.array([[self.cache.proxy.get((k, s), {}).get(stored, math.nan) for k in keys] for s in self.seeds])

    def seconds(self, name: str, keys: Sequence[str]) -> float | None:
        """Mean seconds per arch of signal ``name`` over ``keys`` and seeds (0 for table lookups)."""
        if name.startswith("table_"):
            return 0.0
        if name == "supernet":
            got = [self.cache.supernet[(run, k)]["seconds"] for run in self.run_ids for k in keys
                   if (run, k) in self.cache.supernet]
        else:
            stored = cache_name(name, self.inputs)
            got = [self.cache.seconds.get((k, s), {}).get(stored) for k in keys for s in self.seeds]
            got = [g for g in got if g is not None]
        return float(np.mean(got)) if got else None

    def complete(self, name: str, keys: Sequence[str]) -> bool:
        """Whether every (arch, seed) value of ``name`` is cached."""
        if name.startswith("table_"):
            return True
        if name == "supernet":
            return all((run, k) in self.cache.supernet for run in self.run_ids for k in keys)
        stored = cache_name(name, self.inputs)
        return all(stored in self.cache.proxy.get((k, s), {}) for k in keys for s in self.seeds)

    def label(self, name: str) -> str:
        """The signal's name in the report (``(noise)`` where it saw Gaussian-noise inputs)."""
        label = SIGNAL_LABELS.get(name, name)
        return label + " (noise)" if cache_name(name, self.inputs) != name else label


def kind_of(name: str) -> str:
    """``table``, ``old``, ``new``, ``derived`` or ``supernet``."""
    if name.startswith("table_"):
        return "table"
    if name == "supernet":
        return "supernet"
    if name == "vkdnw_single":
        return "new (derived)"
    return "new" if name in NEW_PROXIES else "old"


def single_rows(sig: Signals, keys: Sequence[str], truth: dict[str, np.ndarray], resamples: int,
                seed: int) -> list[dict[str, Any]]:
    """One row per signal: figures against each target, seconds per arch, non-finite count, published figures."""
    rows = []
    for name in sig.names():
        if not sig.complete(name, keys):
            continue
        vals = sig.values(name, keys)
        tau_pub, rho_pub = PUBLISHED.get(name, (None, None))
        row = {"signal": name, "label": sig.label(name), "kind": kind_of(name),
               "nonfinite": int((~np.isfinite(vals)).sum()), "seconds_per_arch": sig.seconds(name, keys),
               "published_tau": tau_pub, "published_rho": rho_pub}
        for target, true in truth.items():
            row[target] = figures(vals, true, resamples, seed)
        rows.append(row)
    return rows


def reproduction(rows: list[dict[str, Any]], table: Table) -> list[dict[str, Any]]:
    """The published rows reproduced: within `TOLERANCE` of the published tau (against test accuracy) or not."""
    by_name = {r["signal"]: r for r in rows}
    out = []
    flops_all = table.values("flops")
    for name in REPRODUCE:
        if name not in by_name:
            continue
        r = by_name[name]
        tau = r["test"]["tau"]
        published = PUBLISHED.get(name, (None, None))[0]
        entry: dict[str, Any] = {"signal": name, "label": r["label"], "ours": tau["value"], "low": tau["low"],
                                 "high": tau["high"], "published": published}
        if name == "table_params":  # the table has no params row: params rank the archs as FLOPs do, or not
            same = kendall_tau(table.values("params"), flops_all)
            entry["note"] = (f"VKDNW's Table 1 has no params row; tau(params, FLOPs) over the table is {same:.3f}, "
                             "so the FLOPs figure is the one to compare with" if same > 0.999 else
                             "VKDNW's Table 1 has no params row")
            if same > 0.999:
                published = entry["published"] = PUBLISHED["table_flops"][0]
        if name.startswith("table_"):
            metric = name.removeprefix("table_")
            entry["all_archs"] = kendall_tau(table.values(metric), table.values(TARGETS["test"]))
        if published is None:
            entry["verdict"] = "n/a"
            out.append(entry)
            continue
        gap = tau["value"] - published
        entry["gap"] = gap
        met = abs(gap) <= TOLERANCE
        inside = bool(tau["low"] is not None and tau["low"] <= published <= tau["high"])
        entry["verdict"] = "MET" if met else "NOT MET"
        entry["explain"] = (
            f"{'MET' if met else 'NOT MET'}: ours {tau['value']:.3f} vs published {published:.3f} (gap {gap:+.3f}, "
            f"tolerance {TOLERANCE}); the published figure lies {'inside' if inside else 'outside'} our 95 % CI "
            f"[{_num(tau['low'])}, {_num(tau['high'])}], so the gap is {'within' if inside else 'beyond'} sampling "
            "noise"
        )
        if "all_archs" in entry:
            gap_all = entry["all_archs"] - published
            entry["explain"] += (f"; over all 15,625 table archs (no sampling noise) it is {entry['all_archs']:.3f}, "
                                 f"gap {gap_all:+.3f}: {'MET' if abs(gap_all) <= TOLERANCE else 'NOT MET'}")
        out.append(entry)
    return out


# ------------------------------------------------------------------ hybrids

ENCODING = "encoding"
"""A gbdt member standing for the arch's own encoding (`supernet.estimate.encoding_signals`: each edge's operation
one-hot and the operation counts), the graph features beside the proxies in the published model-driven row."""


def nb201_choices() -> dict[str, tuple[str, ...]]:
    """The NB201 space's decisions and options (a tiny instance: the choices do not depend on its size)."""
    from supernet.spaces.nb201 import nb201

    return dict(nb201(C=1, N=1, num_classes=2).choices)


def hybrid_predictions(sig: Signals, names: Sequence[str], keys: Sequence[str], mode: str, pool: Sequence[str],
                       k: int, target: str) -> np.ndarray:
    """``(S, n)`` predictions of an `Estimator` over ``names`` for ``keys``, one estimator per seed.

    ``mode="rank"``: the log-rank sum with ``keys`` as the reference. ``mode="gbdt"``: LightGBM fitted on the first
    ``k`` pool archs' signal values and ``target`` accuracies. Non-finite values rank lowest (`finite_fill`, per
    signal over evaluated and pool archs together).
    """
    from supernet.estimate import Estimator, encoding_signals

    every = [*keys, *pool[:k]] if mode == "gbdt" else list(keys)
    encoding = encoding_signals(nb201_choices()) if ENCODING in names else {}
    names = [n for n in names if n != ENCODING]
    col = {n: sig.values(n, every) for n in names}
    preds = []
    for s in range(len(sig.seeds)):
        table_of = {}
        for n in names:
            row = finite_fill(col[n][min(s, len(col[n]) - 1)])
            table_of[n] = dict(zip(every, row, strict=True))
        signals = {n: (lambda arch, n=n, t=table_of: t[n][sig.table.key(arch)]) for n in names} | encoding
        if mode == "rank":
            est = Estimator(signals, mode="rank").fit([sig.table.arch(x) for x in keys])
        else:
            labelled = list(pool[:k])
            est = Estimator(signals, mode="gbdt", seed=sig.seeds[s]).fit(
                [sig.table.arch(x) for x in labelled], sig.table.values(target, labelled).tolist())
        preds.append(np.asarray(est.predict([sig.table.arch(x) for x in keys]), dtype=float))
    return np.stack(preds)


def hybrid_rows(sig: Signals, keys: Sequence[str], pool: Sequence[str], labels: Sequence[int],
                truth: dict[str, np.ndarray], resamples: int, seed: int) -> dict[str, Any]:
    """Label-free sets (with/without supernet), ablations of the best one, its signals alone; then the same with
    GBDT on ``k`` labelled archs for every ``k`` in ``labels``."""
    have = {n for n in sig.names() if sig.complete(n, keys) and sig.complete(n, pool[: max(labels, default=0)])}
    sets: dict[str, tuple[str, list[str]]] = {}
    skipped: dict[str, list[str]] = {}
    for name, (desc, members) in HYBRID_SETS.items():
        missing = [m for m in members if m not in have]
        if missing:
            skipped[name] = missing
            continue
        sets[name] = (desc, list(members))
        if "supernet" in have:
            sets[f"{name}+supernet"] = (f"{desc}, + supernet accuracy", [*members, "supernet"])
    if not sets:
        return {"sets": {}, "skipped": skipped, "modes": {}}
    seconds = {n: sig.seconds(n, keys) or 0.0 for n in have} | {ENCODING: 0.0}

    def row(label: str, members: list[str], mode: str, k: int) -> dict[str, Any]:
        out: dict[str, Any] = {"row": label, "signals": members,
                               "seconds_per_arch": float(sum(seconds[m] for m in members))}
        for target, true in truth.items():
            pred = hybrid_predictions(sig, members, keys, mode, pool, k, TARGETS[target])
            out[target] = figures(pred, true, resamples, seed)
        return out

    label_free = [row(name, members, "rank", 0) for name, (_, members) in sets.items()]
    for r in label_free:
        r["published_tau"], r["published_rho"] = PUBLISHED.get(r["row"], (None, None))
    best = max(label_free, key=lambda r: r["test"]["tau"]["value"])
    best_members = list(best["signals"])

    def extras(mode: str, k: int) -> list[dict[str, Any]]:
        rows = []
        if len(best_members) > 1:
            for m in best_members:
                rows.append(row(f"{best['row']} - {m}", [x for x in best_members if x != m], mode, k))
            for m in best_members:
                rows.append(row(f"{m} alone", [m], mode, k))
        return rows

    modes: dict[str, list[dict[str, Any]]] = {"label-free": [*label_free, *extras("rank", 0)]}
    for k in labels:
        rows = [row(name, members, "gbdt", k) for name, (_, members) in sets.items()]
        rows += [row(f"{name}+{ENCODING}", [*members, ENCODING], "gbdt", k) for name, (_, members) in sets.items()]
        rows.append(row(f"{ENCODING} alone", [ENCODING], "gbdt", k))
        modes[f"gbdt k={k}"] = [*rows, *extras("gbdt", k)]
    return {"sets": {n: {"description": d, "signals": m} for n, (d, m) in sets.items()}, "skipped": skipped,
            "best_label_free": best["row"], "modes": modes}


# ------------------------------------------------------------------ the report


def _ci(est: Mapping[str, Any]) -> str:
    if est.get("low") is None or not math.isfinite(est.get("value", math.nan)):
        return _num(est.get("value"))
    return f"{est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}]"


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _secs(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "0 (lookup)" if x == 0 else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def markdown(report: dict[str, Any]) -> str:
    """report.md: settings, the reproduction check, every signal, the hybrids, and how to read them."""
    s = report["settings"]
    lines = [
        "# Training-free proxies on NAS-Bench-201 (CIFAR-10)",
        "",
        f"{report['sample']['archs']} archs (a seeded uniform sample, seed {s['sample_seed']}) of the 15,625 "
        f"NB201 archs; labelled pool {report['sample']['pool']} other archs (disjoint). Network C={s['C']}, "
        f"N={s['N']}, {s['size']}x{s['size']} inputs; one CIFAR-10 training minibatch per seed (seeds "
        f"{', '.join(map(str, s['seeds']))}), inputs: {s['inputs']}; batch per proxy: "
        + ", ".join(f"{n} {b}" for n, b in s["batch"].items()) + ".",
        "",
        f"Published column: {PUBLISHED_SOURCE}. Ours: {report['sample']['archs']} archs, so each tau comes with a "
        "95 % bootstrap CI over archs.",
        "",
        "## Reproduction of the published rows (tau against test accuracy)",
        "",
        "| signal | published | ours [95% CI] | gap | all 15,625 (table) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["reproduction"]:
        ours = _ci({"value": r["ours"], "low": r["low"], "high": r["high"]})
        lines.append(f"| {r['label']} | {_num(r['published'])} | {ours} | {_num(r.get('gap'))} | "
                     f"{_num(r.get('all_archs'))} | {r['verdict']} |")
    lines.append("")
    for r in report["reproduction"]:
        for key in ("note", "explain"):
            if r.get(key):
                lines.append(f"- {r['label']}: {r[key]}")
    lines += [
        "",
        "## Every signal",
        "",
        "| signal | kind | tau test [95% CI] | rho test | tau valid [95% CI] | rho valid | s/arch | non-finite | "
        "published tau / rho |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["signals"]:
        pub = f"{_num(r['published_tau'])} / {_num(r['published_rho'])}" if r["published_rho"] is not None else ""
        lines.append(f"| {r['label']} | {r['kind']} | {_ci(r['test']['tau'])} | {_num(r['test']['rho'])} | "
                     f"{_ci(r['valid']['tau'])} | {_num(r['valid']['rho'])} | {_secs(r['seconds_per_arch'])} | "
                     f"{r['nonfinite']} | {pub} |")
    hy = report["hybrid"]
    if hy["modes"]:
        lines += ["", "## Hybrids", ""]
        for name, d in hy["sets"].items():
            lines.append(f"- `{name}`: {d['description']} ({', '.join(d['signals'])})")
        lines += ["", f"Best label-free set (by tau against test accuracy on these archs, so slightly optimistic): "
                      f"`{hy['best_label_free']}`; the ablations and single signals below are of that set.", ""]
        for mode, rows in hy["modes"].items():
            lines += [f"### {mode}", "",
                      "| combination | tau test [95% CI] | rho test | tau valid [95% CI] | rho valid | s/arch | "
                      "published tau / rho |", "|---|---|---|---|---|---|---|"]
            for r in rows:
                pub = (f"{_num(r.get('published_tau'))} / {_num(r.get('published_rho'))}"
                       if r.get("published_tau") is not None else "")
                lines.append(f"| {r['row']} | {_ci(r['test']['tau'])} | {_num(r['test']['rho'])} | "
                             f"{_ci(r['valid']['tau'])} | {_num(r['valid']['rho'])} | {_secs(r['seconds_per_arch'])}"
                             f" | {pub} |")
            lines.append("")
        md = PUBLISHED_MODEL_DRIVEN
        lines.append(f"Published model-driven ranking for scale: {md['name']} tau {md['tau']}, rho {md['rho']} "
                     f"({md['note']}).")
    for name, missing in hy.get("skipped", {}).items():
        lines.append(f"- set `{name}` skipped: not computed for every evaluated and pool arch: {', '.join(missing)}")
    for sn_info in report.get("supernet") or []:
        check = sn_info["check"]
        lines += ["", f"Supernet: {sn_info['run']} ({sn_info['strategy']}, preset {sn_info['preset']}, C="
                      f"{sn_info['C']}, N={sn_info['N']}, {sn_info['size']}x{sn_info['size']}); evaluated as its bench "
                      f"does; {check.get('shared_archs', 0)} archs also in the bench's evaluations.json, max |diff| "
                      f"{_num(check.get('max_abs_diff'), 4)} points."]
    errors = report.get("errors", {})
    if errors:
        lines += ["", "Proxy failures (value NaN, ranked lowest): "
                  + "; ".join(f"{n}: {len(e)} archs, e.g. {next(iter(e.values()))}" for n, e in errors.items())]
    lines += [
        "",
        "How to read: tau is Kendall's tau-b, rho Spearman's, against the table's test_acc_200 (test) and "
        "val_acc_200 (valid); with several seeds each is the mean over seeds. The CI resamples archs (1,000 archs: "
        "about +-0.03). A gap to the published figure inside our CI is sampling noise; outside it, a protocol "
        "difference. Seconds per arch: wall time of one `score` call on this machine (network built, initialised "
        "and scored), mean over archs; a hybrid's is the sum of its signals'. The free floor is FLOPs (table): a "
        "signal not above it adds nothing a user could not get by counting FLOPs.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ command line


def parse_list(text: str, kind: Callable[[str], Any] = str) -> list[Any]:
    """Comma-separated values, stripped, empties and repeats dropped (order kept)."""
    return list(dict.fromkeys(kind(part.strip()) for part in text.split(",") if part.strip()))


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=1000, help="archs to evaluate (default 1000)")
    p.add_argument("--labels", default="50,100", help="labelled-arch counts k for the GBDT rows (default 50,100)")
    p.add_argument("--proxies", help="comma-separated proxies (default: every registered proxy)")
    p.add_argument("--exclude", help="comma-separated proxies to leave out (e.g. vkdnw, the slow one)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds: one minibatch and init each (default 0)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the arch sample (default 0)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="minibatch size (default 64)")
    p.add_argument("--uniform-batch", action="store_true", help="give every proxy --batch-size (no PAPER_BATCH)")
    p.add_argument("--inputs", choices=("cifar", "table"), default="table",
                   help="table (default): Gaussian noise where the VKDNW table used it, CIFAR-10 images elsewhere; "
                   "cifar: CIFAR-10 images for all")
    p.add_argument("--C", type=int, default=16, help="channels of the first stage (default 16; tests use less)")
    p.add_argument("--N", type=int, default=5, help="cells per stage (default 5)")
    p.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    p.add_argument("--supernet-run", help="a finished `supernet bench nb201` directory (bench.json, train/), or "
                   "comma-separated ones, one per seed of --seeds (seed s's proxies are combined with run s)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each CI (default 1000)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="output and cache directory (default: benchmarks/results/proxies_nb201, the kept cache)")
    p.add_argument("--data-dir", default="../shared/data", help="folder with images/ and benchmarks/nb201/")
    p.add_argument("--shard", default="0/1", help="I/N: compute proxies only for every N-th arch from the I-th "
                   "(0-based) of the evaluated + pool list, so N processes on one --out share the work (default 0/1)")
    p.add_argument("--report-only", action="store_true", help="compute nothing: report what the cache holds")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        ValueError: anything else (the message shows the expected form).
    """
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/2 and 1/2 for two processes), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write ``settings.json`` on the first run; later runs must match it (the cached values depend on it)."""
    path = out / "settings.json"
    if not path.is_file():
        write_json(path, settings)
        return
    saved = read_json(path, dict[str, Any], "proxies_nb201 settings")
    diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if diff:
        detail = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{out} caches values computed with other settings ({detail}); use another --out")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Compute what is missing, then build, print and write the report; returns it."""
    from supernet.device import resolve_device

    torch.set_num_threads(args.threads)
    names = parse_list(args.proxies) if args.proxies else PROXIES.names()
    excluded = parse_list(args.exclude) if args.exclude else []
    names = [n for n in names if n not in excluded]
    unknown = [n for n in [*names, *excluded] if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; registered: {', '.join(PROXIES)}")
    args.seeds = parse_list(args.seeds, int)
    labels = sorted(parse_list(args.labels, int)) if args.labels else []
    if not args.seeds or any(k < 1 for k in labels):
        raise ValueError("--seeds needs at least one seed and --labels positive counts")
    shard, shards = parse_shard(args.shard)
    runs = [Path(r) for r in parse_list(args.supernet_run)] if args.supernet_run else []
    if len(runs) not in (0, 1, len(args.seeds)):
        raise ValueError(f"--supernet-run names {len(runs)} runs for {len(args.seeds)} seeds: give one run (used "
                         "with every seed) or one per seed, in the order of --seeds")
    missing = [str(r) for r in runs if not (r / "bench.json").is_file()]
    if missing:
        raise ValueError(f"--supernet-run: no bench.json in {', '.join(missing)} (a finished `supernet bench nb201` "
                         "output directory is expected)")
    args.device = str(resolve_device(args.device))
    table = load_nb201(find_nb201_table(args.data_dir))
    keys, pool = sample_archs(table, args.archs, max(labels, default=0), args.sample_seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {"format": FORMAT, "version": VERSION, "C": args.C, "N": args.N, "size": args.size,
                         "batch_size": args.batch_size, "uniform_batch": args.uniform_batch, "dataset": "cifar10"})
    cache = Cache(out / "cache.jsonl")
    t0 = time.perf_counter()
    computed = {"proxy_values": 0, "supernet_archs": 0}
    supernet_info: list[dict[str, Any]] = []
    if not args.report_only:
        computed["proxy_values"] = compute_proxies(args, table, [*keys, *pool][shard::shards], names, cache)
        supernet_info = []
        for run_dir in runs:
            count, info = compute_supernet(args, run_dir, table, [*keys, *pool], cache)
            computed["supernet_archs"] += count
            supernet_info.append(info)
    else:
        supernet_info = [{"run": str(r), **vars(bench_config(r)),
                          "check": check_against_bench(r, str(r.resolve()), [*keys, *pool], cache)} for r in runs]
    compute_s = time.perf_counter() - t0

    # the report covers the proxies asked for and every other one the cache already holds for all evaluated archs
    cached = [n for n in PROXIES.names() if n not in names
              and all(cache_name(n, args.inputs) in cache.proxy.get((k, s), {}) for k in keys for s in args.seeds)]
    sig = Signals(table, cache, args.seeds, [*names, *cached], [str(r) for r in runs], args.inputs)
    truth = {t: table.values(m, keys) for t, m in TARGETS.items()}
    rows = single_rows(sig, keys, truth, args.resamples, args.sample_seed)
    report = {
        "format": FORMAT,
        "version": VERSION,
        "settings": {"archs": args.archs, "labels": labels, "seeds": args.seeds, "sample_seed": args.sample_seed,
                     "C": args.C, "N": args.N, "size": args.size, "inputs": args.inputs,
                     "batch": {n: batch_size_of(n, args) for n in [*names, *cached]}, "device": args.device,
                     "threads": args.threads, "resamples": args.resamples, "data_dir": str(args.data_dir),
                     "table": table.metadata, "targets": TARGETS},
        "protocol": {"paper_batch": {n: {"images": b, "source": src} for n, (b, src) in PAPER_BATCH.items()},
                     "batch_notes": BATCH_NOTES, "table_noise": list(TABLE_NOISE),
                     "no_grad": NO_GRAD},
        "published": {"source": PUBLISHED_SOURCE, "figures": PUBLISHED, "model_driven": PUBLISHED_MODEL_DRIVEN},
        "sample": {"archs": len(keys), "pool": len(pool), "disjoint": not set(keys) & set(pool)},
        "reproduction": reproduction(rows, table),
        "signals": rows,
        "hybrid": hybrid_rows(sig, keys, pool, labels, truth, args.resamples, args.sample_seed),
        "supernet": supernet_info,
        "errors": cache.errors,
        "computed_this_run": computed,
        "compute_seconds_this_run": compute_s,
        "evaluated_archs": keys,
        "pool_archs": pool,
    }
    md = markdown(report)
    write_json(out / "report.json", report)
    write_text(out / "report.md", md)
    print(md)
    print(f"written: {out}/report.md, {out}/report.json (computed now: {computed['proxy_values']} proxy values, "
          f"{computed['supernet_archs']} supernet archs, {compute_s:.0f} s)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 2 on bad input (the message says what is wrong)."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"proxies_nb201: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
