"""`supernet demo` wall time, CPU time and peak memory (a child process; the demo must take <= 5 min on 2 CPU cores).

    python benchmarks/demo_time.py                      # default demo on CPU
    taskset -c 0,1 python benchmarks/demo_time.py       # pin to 2 cores on a bigger machine
    python benchmarks/demo_time.py --device cuda

Samples/s of supernet training vs the extracted max arch alone: see benchmarks/train_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="demo_time-")) / "demo"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from supernet.cli import main; sys.exit(main())",
        "demo",
        "--out",
        str(out),
        "--device",
        args.device,
    ]
    if args.tiny:
        cmd.append("--tiny")
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "demo.json").read_text())
    t = summary["timings"]
    table = Table(
        title=f"supernet demo on {args.device} ({os.cpu_count()} CPUs visible, {len(os.sched_getaffinity(0))} usable)"
    )
    for col in ("wall s", "CPU s", "peak RSS MB", "train s", "search s", "export s", "val loss", "params"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{wall:.0f}",
        f"{usage.ru_utime + usage.ru_stime:.0f}",
        f"{usage.ru_maxrss / 1024:.0f}",
        f"{t['train_s']:.0f}",
        f"{t['search_s']:.0f}",
        f"{t['export_s']:.1f}",
        f"{summary['exported']['metrics'].get('loss', float('nan')):.3f}",
        f"{summary['exported']['params']:,}",
    )
    Console().print(table)
    print("limit: 300 s wall on 2 CPU cores ->", "OK" if wall <= 300 else "TOO SLOW")


if __name__ == "__main__":
    main()
