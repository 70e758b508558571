"""Our zero-cost proxies vs NASLib's on the same NAS-Bench-201 archs (CIFAR-10), and vs ground truth.

Reads ../shared/data/benchmarks/naslib_zc/zc_nasbench201_subset725.json (13 scores NASLib computed on 725 NB201
archs) and scores the first ``--archs`` of them with `supernet.proxies` on an NB201 net (C=16, N=5) at random
initialisation, on one CIFAR-10 training minibatch (JPEG tarball, CIFAR-10 normalisation). Prints, per proxy, the
Spearman correlation between our scores and NASLib's, and each proxy's Spearman with NASLib's ``val_accuracy``
(ours beside NASLib's on the same archs), plus the wall time per proxy per arch.

Scores are cached in a JSONL file (one line per arch), so a run can be resumed or extended.

    .venv/bin/python benchmarks/proxies_naslib.py --archs 200 --cache /tmp/proxies_naslib.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from supernet import proxies as P
from supernet.data import image_tarball, images_to_tensor, normalize_images
from supernet.spaces import nb201

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
# NASLib tuple positions: edges 0->1, 0->2, 0->3, 1->2, 1->3, 2->3
NASLIB_EDGES = ("edge_1_0", "edge_2_0", "edge_3_0", "edge_2_1", "edge_3_1", "edge_3_2")
NASLIB_PROXIES = (
    "synflow",
    "snip",
    "grasp",
    "fisher",
    "grad_norm",
    "plain",
    "jacov",
    "nwot",
    "l2_norm",
    "params",
    "flops",
)
OURS = (*NASLIB_PROXIES, "fisher_naslib", "gradsign", "zen")
# our fisher with NASLib's bookkeeping (each channel's value counted once per weight feeding it)
EXTRA = {"fisher_naslib": lambda net, batch, seed=0: P.fisher(net, batch, seed, naslib_weighting=True)}
NASLIB_NAME = {"fisher_naslib": "fisher"}


def naslib_arch(t: str) -> dict[str, str]:
    ops = [int(v) for v in t.strip("()").split(",")]
    return {e: NASLIB_OPS[o] for e, o in zip(NASLIB_EDGES, ops, strict=True)}


def cifar_batch(batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = image_tarball(DATA / "images" / "cifar10-train.tar.gz", subset=max(10, batch_size // 5), seed=seed)
    idx = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))[:batch_size].numpy()
    return normalize_images(images_to_tensor(data.images[idx])), torch.as_tensor(data.labels[idx], dtype=torch.long)


def compute(args: argparse.Namespace, rows: list[tuple[str, dict]]) -> dict[str, dict]:
    cache = Path(args.cache)
    done = _read(cache) if cache.exists() else {}
    batch = cifar_batch(args.batch_size, args.seed)
    space = nb201(C=16, N=5, num_classes=10)
    todo = [(k, v) for k, v in rows if any(p not in done.get(k, {"scores": {}})["scores"] for p in args.proxies)]
    print(f"{len(done)} archs cached, {len(todo)} to score (batch {args.batch_size}, seed {args.seed})", flush=True)
    if not todo:
        return done
    with cache.open("a") as f:
        for n, (key, _) in enumerate(todo):
            arch = naslib_arch(key)
            base = P.fresh_network(space, arch, seed=args.seed, device="cpu")
            rec = done.get(key, {"arch": key, "scores": {}, "seconds": {}})
            for name in args.proxies:
                if name in rec["scores"]:
                    continue
                net = _copy(base)
                t0 = time.perf_counter()
                rec["scores"][name] = {**P.PROXIES, **EXTRA}[name](net, batch, seed=args.seed)
                rec["seconds"][name] = time.perf_counter() - t0
            f.write(json.dumps(rec, allow_nan=True) + "\n")
            f.flush()
            done[key] = rec
            if (n + 1) % 10 == 0:
                print(f"  scored {n + 1}/{len(todo)}", flush=True)
    return done


def _read(cache: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    for line in cache.read_text().splitlines():
        rec = json.loads(line)
        done[rec["arch"]] = rec  # later lines (more proxies) replace earlier ones
    return done


def _copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net)


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/proxies_naslib.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--proxies", default=",".join(OURS), help="comma-separated proxies to compute")
    ap.add_argument("--report-only", action="store_true", help="only report what the cache holds")
    args = ap.parse_args()
    args.proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    torch.set_num_threads(args.threads)
    naslib = json.loads((DATA / "benchmarks" / "naslib_zc" / "zc_nasbench201_subset725.json").read_text())["cifar10"]
    rows = list(naslib.items())[: args.archs]
    done = (
        compute(args, rows)
        if not args.report_only
        else {json.loads(line)["arch"]: json.loads(line) for line in Path(args.cache).read_text().splitlines()}
    )
    keys = [k for k, _ in rows if k in done]
    acc = [naslib[k]["val_accuracy"] for k in keys]
    print(f"\n{len(keys)} NB201 archs (C=16, N=5), CIFAR-10 batch {args.batch_size}, seed {args.seed}")
    head = ("proxy", "archs", "rho(ours,NASLib)", "rho(ours,acc)", "rho(NASLib,acc)", "s/arch", "nonfinite")
    print(f"{head[0]:<13} {head[1]:>5} {head[2]:>17} {head[3]:>14} {head[4]:>16} {head[5]:>8} {head[6]:>9}")
    for name in OURS:
        have = [k for k in keys if name in done[k]["scores"]]
        if not have:
            continue
        acc = [naslib[k]["val_accuracy"] for k in have]
        ours = [done[k]["scores"][name] for k in have]
        ref = NASLIB_NAME.get(name, name)
        theirs = [naslib[k].get(ref, {}).get("score", math.nan) for k in have] if ref in NASLIB_PROXIES else None
        secs = float(np.mean([done[k]["seconds"][name] for k in have]))
        bad = sum(not math.isfinite(v) for v in ours)
        agree = f"{spearman(ours, theirs):17.3f}" if theirs else f"{'-':>17}"
        theirs_acc = f"{spearman(theirs, acc):16.3f}" if theirs else f"{'-':>16}"
        print(f"{name:<13} {len(have):5d} {agree} {spearman(ours, acc):14.3f} {theirs_acc} {secs:8.3f} {bad:9d}")


if __name__ == "__main__":
    main()
