"""Kill/resume exactness: do `supernet train` and `supernet search` survive SIGKILL at random moments?

Training: a tiny deterministic pipeline config (GPT space with small kwargs on the embedded Tiny Shakespeare,
sandwich rule, a checkpoint every few steps) is trained once without interruption (run A), then again in run B,
where the process group is killed with SIGKILL at random times and restarted with ``--resume`` until the run
completes. Checked: every tensor of B's ``weights.safetensors`` equals A's bit for bit (``torch.equal``), the
``(step, loss)`` records of ``metrics.jsonl`` are identical (the other logged values except timings as well), the
checkpoint directories left are the same, and B holds no temp files (``.step-*`` directories, ``*.tmp`` files).

Search: ``supernet search RUN --trials N --algorithm evolution`` runs on a fresh copy of run A without interruption
(the reference), and on another copy that is killed at random times and rerun until it finishes. A resumed
sampler may propose other archs than the uninterrupted one, so the exact checks are: every arch both studies
evaluated has identical metrics (study, ``pareto.json`` front and ``trials.csv``), no arch was evaluated twice
(COMPLETE trials with the user attr ``evaluated`` == their distinct ``key``s), the study reaches N distinct
archs, its outputs agree with the study, and no temp files are left. It also reports the archs in common and
the waiting time each resume spent before its first result, beyond the reference's time to first result.

Kill points: ``--kills`` in total (60 % for training, the rest for search), each drawn with
``random.Random(--seed)`` uniformly within the expected duration of the remaining work: start-up + remaining
fraction x work time of the uninterrupted run (+ the mean resume wait observed so far, for search). A kill point
that falls after the process has finished is "missed": reported apart, not counted as a kill. When a killed run
completes while kill points are left, a new round starts on a fresh run dir (or fresh copy), each round checked
against the same reference. Each process runs with one thread (``--threads``).

    .venv/bin/python benchmarks/kill_resume.py --kills 20 --seed 0
    .venv/bin/python benchmarks/kill_resume.py --kills 6 --steps 200 --trials 12 --keep   # quick look; keeps files

Prints one table row per phase (exit status 1 when any check fails) and the details below it; every attempt's
output is logged under the work dir (``--workdir``, kept; default a temp dir removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

CLI = "import sys; from supernet.cli import main; sys.exit(main())"
STUDY_NAME = "search"
TIMING_KEYS = {"samples_per_s"}

CONFIG = """\
# written by benchmarks/kill_resume.py
run_dir: unused
device: cpu
space: {{name: gpt, kwargs: {{block_size: 32, embed_dims: [32, 48, 64], depths: [1, 2], head_dim: 16}}}}
data: {{name: shakespeare}}
train:
  steps: {steps}
  batch_size: 16
  strategy: sandwich
  lr: 0.002
  warmup_steps: 20
  checkpoint_every: {checkpoint_every}
  log_every: 1
  deterministic: true
  progress: false
search: {{algorithm: evolution, objectives: [loss, params], trials: {trials}, eval_batches: 32, eval_batch_size: 64}}
"""


@dataclass
class Attempt:
    """One process start: how it ended and how far the run was before and after."""

    round: int
    resume: bool
    kill_at: float | None
    outcome: str  # killed | missed | done | failed | timeout
    rc: int
    elapsed: float
    progress_before: float
    progress_after: float
    first_result: float | None = None  # search: launch -> first COMPLETE trial of this attempt (s)


@dataclass
class Phase:
    """Result of one phase (training or search), over all its rounds."""

    name: str
    kill_points: int
    attempts: list[Attempt] = field(default_factory=list)
    ref_s: float = 0.0
    killed_s: float = 0.0
    rounds: int = 0
    checked: int = 0  # rounds that completed and were compared with the reference
    identical: bool = True
    re_evals: int | None = None
    leftovers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(a.outcome == "killed" for a in self.attempts)

    @property
    def missed(self) -> int:
        return sum(a.outcome == "missed" for a in self.attempts)

    @property
    def resumes(self) -> int:
        return sum(a.resume for a in self.attempts)

    @property
    def ok(self) -> bool:
        return self.checked > 0 and self.identical and not self.failures and not self.leftovers and not self.re_evals


# ---------------------------------------------------------------- processes


def child_env(threads: int) -> dict[str, str]:
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SUPERNET_DEBUG", None)
    return env


def supernet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def run_process(
    cmd: list[str], env: dict[str, str], log: Path, kill_at: float | None, timeout: float
) -> tuple[str, int, float]:
    """Start ``cmd`` in a new session; SIGKILL its process group after ``kill_at`` s (None: let it finish).

    Returns (outcome, exit status, seconds): ``killed``; ``missed`` (it finished before the kill point);
    ``done``; ``failed`` (non-zero exit of its own); ``timeout`` (ran past ``timeout`` s, then killed).
    """
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}   # kill at {kill_at}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        limit = timeout if kill_at is None else min(kill_at, timeout)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
            elapsed = time.perf_counter() - start
            if rc == -signal.SIGKILL:
                return ("killed" if kill_at is not None and kill_at < timeout else "timeout"), rc, elapsed
            # it exited by itself between the timeout and the kill
        elapsed = time.perf_counter() - start
    if rc != 0:
        return "failed", rc, elapsed
    return ("missed" if kill_at is not None else "done"), rc, elapsed


def log_tail(log: Path, n: int = 15) -> str:
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join("      " + line for line in lines[-n:])


def leftover_temp_files(root: Path) -> list[str]:
    """``.step-*`` directories and ``*.tmp`` files anywhere under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [str(Path(dirpath, d).relative_to(root)) + "/" for d in dirnames if d.startswith(".step-")]
        found += [str(Path(dirpath, f).relative_to(root)) for f in filenames if f.endswith(".tmp")]
    return sorted(found)


def kill_loop(
    phase: Phase,
    rnd: int,
    points: int,
    rng: random.Random,
    cmd_for: Callable[[bool], list[str]],
    progress: Callable[[], float],
    expected_for: Callable[[float], float],
    env: dict[str, str],
    log: Path,
    timeout: float,
    on_attempt: Callable[[Attempt, datetime], None] | None = None,
) -> tuple[int, bool]:
    """Start, kill at random points, resume until the run completes; returns (kill points used, completed).

    While kill points are left, each start draws one uniformly within ``expected_for(progress)`` seconds.
    """
    used = 0
    while True:
        resume = any(a.round == rnd for a in phase.attempts)
        before = progress()
        kill_at = rng.uniform(0.0, expected_for(before)) if used < points else None
        used += kill_at is not None
        launched = datetime.now()
        outcome, rc, elapsed = run_process(cmd_for(resume), env, log, kill_at, timeout)
        attempt = Attempt(rnd, resume, kill_at, outcome, rc, elapsed, before, progress())
        if on_attempt is not None:
            on_attempt(attempt, launched)
        phase.attempts.append(attempt)
        if outcome == "killed":
            continue
        if outcome in ("failed", "timeout"):
            phase.failures.append(
                f"round {rnd}, attempt {len(phase.attempts)} ({'resume' if resume else 'start'}) {outcome} "
                f"(exit {rc}) after {elapsed:.1f} s:\n{log_tail(log)}"
            )
            return used, False
        return used, True


# ---------------------------------------------------------------- training


def train_progress(run: Path, steps: int) -> float:
    """Fraction of the steps saved in the latest checkpoint (0 when there is none or it is unreadable)."""
    try:
        return int(json.loads((run / "latest.json").read_text())["step"]) / steps
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a metrics.jsonl and how many lines did not parse as JSON objects."""
    records, bad = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def compare_weights(a: Path, b: Path) -> tuple[bool, str]:
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    if wa.keys() != wb.keys():
        return False, f"tensor names differ: {sorted(wa.keys() ^ wb.keys())[:5]}"
    differ = [
        k for k in wa if wa[k].dtype != wb[k].dtype or wa[k].shape != wb[k].shape or not torch.equal(wa[k], wb[k])
    ]
    if differ:
        k = differ[0]
        gap = (wa[k].double() - wb[k].double()).abs().max().item() if wa[k].shape == wb[k].shape else float("nan")
        return False, f"{len(differ)}/{len(wa)} tensors differ (first {k}: max |diff| {gap:.3g})"
    return True, f"{len(wa)} tensors bit-identical"


def train_phase(
    args: argparse.Namespace, work: Path, env: dict[str, str], rng: random.Random, kill_points: int
) -> tuple[Phase, Path]:
    phase = Phase("train", kill_points)
    cfg = work / "train.yaml"
    cfg.write_text(CONFIG.format(steps=args.steps, checkpoint_every=args.checkpoint_every, trials=args.trials))
    run_a, run_b = work / "train-A", work / "train-B"
    logs = work / "logs"

    # Reference run A, timing the start-up (launch -> first logged step).
    cmd_a = supernet_cmd("train", str(cfg), "--run-dir", str(run_a))
    start = time.perf_counter()
    with open(logs / "train-A.log", "ab") as out:
        proc = subprocess.Popen(cmd_a, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        startup = None
        while proc.poll() is None:
            metrics = run_a / "metrics.jsonl"
            if startup is None and metrics.exists() and metrics.stat().st_size > 0:
                startup = time.perf_counter() - start
            time.sleep(0.05)
        rc = proc.wait()
    phase.ref_s = time.perf_counter() - start
    if rc != 0:
        phase.failures.append(f"reference training failed (exit {rc}):\n{log_tail(logs / 'train-A.log')}")
        return phase, run_a
    startup = min(startup if startup is not None else 0.2 * phase.ref_s, phase.ref_s)
    work_s = max(phase.ref_s - startup, 1e-3)
    phase.notes.append(f"reference: {args.steps} steps in {phase.ref_s:.1f} s (start-up {startup:.1f} s)")
    timeout = max(120.0, 5 * phase.ref_s + 60)

    # Runs B1, B2, ...: killed at random points and resumed until complete; a new round while points are left.
    left = kill_points
    while True:
        phase.rounds += 1
        run_b = work / f"train-B{phase.rounds}"
        t0 = time.perf_counter()
        used, completed = kill_loop(
            phase,
            phase.rounds,
            left,
            rng,
            lambda resume, run_b=run_b: supernet_cmd(
                "train", str(cfg), "--run-dir", str(run_b), *(["--resume"] if resume else [])
            ),
            lambda run_b=run_b: train_progress(run_b, args.steps),
            lambda before: startup + (1.0 - before) * work_s,
            env,
            logs / f"train-B{phase.rounds}.log",
            timeout,
        )
        phase.killed_s += time.perf_counter() - t0
        left -= used
        if not completed:
            break
        check_training(phase, run_a, run_b, f"round {phase.rounds} ({run_b.name})")
        if left <= 0:
            break
    return phase, run_a


def check_training(phase: Phase, run_a: Path, run_b: Path, label: str) -> None:
    """Compare finished run B with reference A: weights, metrics log, checkpoints, run.json, temp files."""
    fails: list[str] = []
    same, detail = compare_weights(run_a / "weights.safetensors", run_b / "weights.safetensors")
    if not same:
        fails.append(f"final weights differ: {detail}")
    rec_a, bad_a = read_metrics(run_a / "metrics.jsonl")
    rec_b, bad_b = read_metrics(run_b / "metrics.jsonl")
    if bad_a or bad_b:
        fails.append(f"metrics.jsonl lines that are not JSON records: A {bad_a}, B {bad_b}")
    sl_a = [(r.get("step"), r.get("loss")) for r in rec_a]
    sl_b = [(r.get("step"), r.get("loss")) for r in rec_b]
    if sl_a != sl_b:
        first = next((i for i, (x, y) in enumerate(zip(sl_a, sl_b, strict=False)) if x != y), min(len(sl_a), len(sl_b)))
        at_a, at_b = (sl[first] if first < len(sl) else None for sl in (sl_a, sl_b))
        fails.append(
            f"metrics.jsonl (step, loss) differ: A has {len(sl_a)} records, B {len(sl_b)}; first difference at "
            f"record {first}: A {at_a}, B {at_b}"
        )
        same = False
    else:
        strip = [[{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in recs] for recs in (rec_a, rec_b)]
        if strip[0] != strip[1]:
            i = next(i for i, (x, y) in enumerate(zip(*strip, strict=True)) if x != y)
            ra, rb = strip[0][i], strip[1][i]
            keys = sorted(k for k in ra.keys() | rb.keys() if ra.get(k) != rb.get(k))
            fails.append(f"metrics.jsonl record {i} (step {sl_a[i][0]}) differs in {keys}")
            same = False
    ck_a = sorted(p.name for p in (run_a / "checkpoints").iterdir())
    ck_b = sorted(p.name for p in (run_b / "checkpoints").iterdir())
    if ck_a != ck_b:
        fails.append(f"checkpoint directories differ: A {ck_a}, B {ck_b}")
    meta_a, meta_b = (json.loads((r / "run.json").read_text()) for r in (run_a, run_b))
    for key in ("status", "step", "final_arch"):
        if meta_a.get(key) != meta_b.get(key):
            fails.append(f"run.json {key!r} differs: A {meta_a.get(key)!r}, B {meta_b.get(key)!r}")
    leftovers = leftover_temp_files(run_b)
    phase.checked += 1
    phase.identical = phase.identical and same
    phase.leftovers += [f"{run_b.name}/{f}" for f in leftovers]
    phase.failures += [f"{label}: {f}" for f in fails]
    if not fails:
        phase.notes.append(
            f"{label}: {detail}; {len(sl_a)} metrics records (step, loss, ...) identical; "
            f"checkpoints {ck_b} as in A; {len(leftovers)} temp files"
        )


# ---------------------------------------------------------------- search


@dataclass
class TrialRow:
    number: int
    state: str
    attrs: dict[str, Any]
    start: datetime | None
    complete: datetime | None


def load_trials(run: Path) -> list[TrialRow]:
    """Every trial of the run's search study (read with the library's storage, heartbeats off)."""
    import optuna

    from supernet.searching import make_storage

    db = run / "search" / "study.db"
    if not db.is_file():
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{db.resolve()}"
    try:
        storage = make_storage(url, heartbeat=False)
    except TypeError:  # a make_storage without the heartbeat switch
        storage = make_storage(url)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:  # killed before the study was created
        return []
    rows = [
        TrialRow(t.number, t.state.name, dict(t.user_attrs), t.datetime_start, t.datetime_complete)
        for t in study.get_trials(deepcopy=False)
    ]
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()
    return rows


def complete_keys(rows: list[TrialRow]) -> set[str]:
    return {r.attrs["key"] for r in rows if r.state == "COMPLETE" and "key" in r.attrs}


def metrics_by_key(rows: list[TrialRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r.number):
        if r.state == "COMPLETE" and "metrics" in r.attrs:
            out.setdefault(r.attrs["key"], r.attrs["metrics"])
    return out


def re_evaluations(rows: list[TrialRow]) -> tuple[int, int, int]:
    """(COMPLETE trials that evaluated, distinct keys among them, the difference)."""
    ev = [r.attrs.get("key") for r in rows if r.state == "COMPLETE" and r.attrs.get("evaluated")]
    return len(ev), len(set(ev)), len(ev) - len(set(ev))


def first_result_after(rows: list[TrialRow], launched: datetime) -> float | None:
    done = [r.complete for r in rows if r.state == "COMPLETE" and r.complete is not None and r.complete >= launched]
    return (min(done) - launched).total_seconds() if done else None


def search_outputs(
    run: Path, rows: list[TrialRow]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]], list[str]]:
    """(front key -> metrics from pareto.json, key -> trials.csv metric cells, problems with the outputs)."""
    problems: list[str] = []
    pareto = json.loads((run / "search" / "pareto.json").read_text())
    front = {e["key"]: e["metrics"] for e in pareto.get("front", [])}
    key_of = {r.number: r.attrs.get("key") for r in rows}
    arch_of = {r.number: r.attrs.get("arch") for r in rows}
    table: dict[str, dict[str, str]] = {}
    with open(run / "search" / "trials.csv", newline="") as f:
        for row in csv.DictReader(f):
            n = int(row["trial"])
            key = key_of.get(n)
            if key is None:
                problems.append(f"trials.csv row for trial {n}, which the study does not have")
                continue
            if json.loads(row["arch"]) != arch_of[n]:
                problems.append(f"trials.csv arch of trial {n} differs from the study's")
            if key in table:
                problems.append(f"trials.csv lists arch {key} twice")
            table[key] = {k: v for k, v in row.items() if k not in ("index", "trial", "arch")}
    feasible = {r.attrs["key"] for r in rows if r.state == "COMPLETE" and r.attrs.get("feasible") and "key" in r.attrs}
    if set(table) != feasible:
        problems.append(f"trials.csv has {len(table)} archs, the study {len(feasible)} feasible ones")
    if not set(front) <= set(table):
        problems.append("pareto.json front has archs that trials.csv lacks")
    return front, table, problems


def search_phase(
    args: argparse.Namespace, work: Path, env: dict[str, str], rng: random.Random, kill_points: int, trained: Path
) -> Phase:
    phase = Phase("search", kill_points)
    logs = work / "logs"
    ref = work / "search-ref"
    shutil.copytree(trained, ref, ignore=shutil.ignore_patterns("search"))

    def cmd(run: Path) -> list[str]:
        return supernet_cmd(
            "search",
            str(run),
            "--trials",
            str(args.trials),
            "--algorithm",
            "evolution",
            "--no-progress",
            "--device",
            "cpu",
        )

    def progress(run: Path) -> float:
        return min(1.0, len(complete_keys(load_trials(run))) / args.trials)

    launched = datetime.now()
    outcome, rc, phase.ref_s = run_process(cmd(ref), env, logs / "search-ref.log", None, 600.0)
    if outcome != "done":
        phase.failures.append(f"reference search {outcome} (exit {rc}):\n{log_tail(logs / 'search-ref.log')}")
        return phase
    ref_rows = load_trials(ref)
    ref_first = first_result_after(ref_rows, launched) or 0.0
    work_s = max(phase.ref_s - ref_first, 1e-3)
    ref_ev, ref_keys_ev, ref_re = re_evaluations(ref_rows)
    phase.notes.append(
        f"reference: {args.trials} archs in {phase.ref_s:.1f} s (first result after {ref_first:.1f} s; "
        f"{ref_ev} evaluations of {ref_keys_ev} distinct archs)"
    )
    if ref_re:
        phase.failures.append(f"the reference search evaluated {ref_re} archs twice")
    if len(complete_keys(ref_rows)) < args.trials:
        phase.failures.append(
            f"the reference study has {len(complete_keys(ref_rows))} distinct archs, {args.trials} requested"
        )
    timeout = max(300.0, 5 * phase.ref_s + 120)
    waits: list[float] = []

    def on_attempt(attempt: Attempt, launched: datetime, run: Path) -> None:
        attempt.first_result = first_result_after(load_trials(run), launched)
        if attempt.resume and attempt.first_result is not None:
            waits.append(max(0.0, attempt.first_result - ref_first))

    left = kill_points
    phase.re_evals = 0
    while True:
        phase.rounds += 1
        killed = work / f"search-killed{phase.rounds}"
        shutil.copytree(trained, killed, ignore=shutil.ignore_patterns("search"))
        t0 = time.perf_counter()
        used, completed = kill_loop(
            phase,
            phase.rounds,
            left,
            rng,
            lambda resume, killed=killed: cmd(killed),
            lambda killed=killed: progress(killed),
            lambda before: ref_first + (1.0 - before) * work_s + (statistics.mean(waits) if waits else 0.0),
            env,
            logs / f"{killed.name}.log",
            timeout,
            lambda attempt, launched, killed=killed: on_attempt(attempt, launched, killed),
        )
        phase.killed_s += time.perf_counter() - t0
        left -= used
        if not completed:
            break
        check_search(phase, args, ref, ref_rows, killed, f"round {phase.rounds} ({killed.name})")
        if left <= 0:
            break
    resumed = [a for a in phase.attempts if a.resume]
    blind = sum(a.first_result is None for a in resumed)
    phase.notes.append(
        f"wait of each resume before its first result, beyond the reference's {ref_first:.1f} s: "
        f"[{', '.join(f'{w:.1f}' for w in waits)}] s"
        + (f"; {blind} resumes were killed before any result" if blind else "")
    )
    return phase


def check_search(
    phase: Phase, args: argparse.Namespace, ref: Path, ref_rows: list[TrialRow], killed: Path, label: str
) -> None:
    """Compare a finished killed-and-resumed search with the reference on the archs both evaluated."""
    fails: list[str] = []
    rows = load_trials(killed)
    n_distinct = len(complete_keys(rows))
    if n_distinct < args.trials:
        fails.append(f"the study has {n_distinct} distinct archs, {args.trials} requested")
    n_ev, n_keys, re_evals = re_evaluations(rows)
    phase.re_evals = (phase.re_evals or 0) + re_evals
    if re_evals:
        fails.append(f"{re_evals} archs were evaluated twice ({n_ev} evaluations of {n_keys} archs)")
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    m_ref, m_kil = metrics_by_key(ref_rows), metrics_by_key(rows)
    common = sorted(m_ref.keys() & m_kil.keys())
    mismatched = [k for k in common if m_ref[k] != m_kil[k]]
    if mismatched:
        k = mismatched[0]
        fails.append(
            f"{len(mismatched)}/{len(common)} common archs have other metrics, e.g. {k}: "
            f"reference {m_ref[k]}, killed {m_kil[k]}"
        )
    front_r, table_r, probs_r = search_outputs(ref, ref_rows)
    front_k, table_k, probs_k = search_outputs(killed, rows)
    fails += [f"reference outputs: {p}" for p in probs_r] + [f"outputs: {p}" for p in probs_k]
    front_common = sorted(front_r.keys() & front_k.keys())
    bad_front = [k for k in front_common if front_r[k] != front_k[k]]
    table_common = sorted(table_r.keys() & table_k.keys())
    bad_table = [k for k in table_common if table_r[k] != table_k[k]]
    if bad_front:
        fails.append(f"pareto.json: {len(bad_front)} archs on both fronts with other metrics")
    if bad_table:
        fails.append(f"trials.csv: {len(bad_table)} archs in both with other metrics")
    phase.identical = phase.identical and not mismatched and not bad_front and not bad_table
    leftovers = leftover_temp_files(killed)
    phase.checked += 1
    phase.leftovers += [f"{killed.name}/{f}" for f in leftovers]
    phase.failures += [f"{label}: {f}" for f in fails]
    phase.notes.append(
        f"{label}: {n_distinct} distinct archs, {n_ev} evaluations of {n_keys} archs (re-evaluations {re_evals}); "
        f"trials by state {states}; archs in common with the reference: {len(common)} of {len(m_ref)}, metrics "
        f"{'identical' if not mismatched else 'DIFFER'}; {len(front_common)} on both fronts "
        f"({len(front_r)} / {len(front_k)}); {len(table_common)} in both trials.csv; {len(leftovers)} temp files"
    )
    if states.get("RUNNING"):
        phase.notes.append(
            f"{label}: {states['RUNNING']} trials of killed processes are left RUNNING in the finished study"
        )


# ---------------------------------------------------------------- report


def report(phases: list[Phase], wall: float, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"kill/resume exactness (--kills {args.kills} --seed {args.seed}), wall {wall:.0f} s")
    for col in (
        "phase",
        "kill points",
        "kills",
        "missed",
        "resumes",
        "rounds",
        "bit-identical",
        "re-evaluations",
        "leftover temp files",
        "ref s",
        "killed s",
        "result",
    ):
        table.add_column(col, justify="left" if col in ("phase", "result") else "right")
    for p in phases:
        table.add_row(
            p.name,
            str(p.kill_points),
            str(p.kills),
            str(p.missed),
            str(p.resumes),
            str(p.rounds),
            ("yes" if p.identical else "no") if p.checked else "-",
            "-" if p.re_evals is None else str(p.re_evals),
            str(len(p.leftovers)),
            f"{p.ref_s:.1f}",
            f"{p.killed_s:.1f}",
            "ok" if p.ok else "FAIL",
        )
    console = Console(width=160)
    console.print(table)
    for p in phases:
        console.print(f"[bold]{p.name}[/bold]")
        for a_i, a in enumerate(p.attempts, 1):
            kill = "  none " if a.kill_at is None else f"{a.kill_at:5.1f} s"
            extra = "" if a.first_result is None else f", first result after {a.first_result:.1f} s"
            console.print(
                f"  round {a.round} attempt {a_i:2d} {'resume' if a.resume else 'start '}: kill at {kill}, "
                f"ran {a.elapsed:5.1f} s, "
                f"{a.outcome} (exit {a.rc}), progress {a.progress_before:.0%} -> {a.progress_after:.0%}{extra}",
                highlight=False,
            )
        for n in p.notes:
            console.print(f"  {n}", highlight=False)
        for f in p.leftovers:
            console.print(f"  [red]leftover temp file:[/red] {f}", highlight=False)
        for f in p.failures:
            console.print(f"  [red]FAIL:[/red] {f}", highlight=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="kill points in total (default %(default)s)")
    ap.add_argument("--train-kills", type=int, help="of which for training (default 60%%)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    ap.add_argument("--workdir", type=Path, help="where runs and logs go (kept; default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir")
    ap.add_argument("--steps", type=int, default=800, help="training steps")
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--trials", type=int, default=40, help="distinct archs the search evaluates")
    ap.add_argument("--threads", type=int, default=1, help="threads per process (OMP_NUM_THREADS)")
    args = ap.parse_args()
    os.environ.update({k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    import torch

    torch.set_num_threads(args.threads)

    if args.workdir is not None:
        work = args.workdir.resolve()
        if work.exists() and any(work.iterdir()):
            ap.error(f"--workdir {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="kill_resume-"))
    (work / "logs").mkdir()
    env = child_env(args.threads)
    rng = random.Random(args.seed)
    train_kills = args.train_kills if args.train_kills is not None else round(0.6 * args.kills)
    train_kills = max(0, min(train_kills, args.kills))

    start = time.perf_counter()
    train, trained = train_phase(args, work, env, rng, train_kills)
    phases = [train]
    if (trained / "weights.safetensors").exists():  # the reference run finished
        phases.append(search_phase(args, work, env, rng, args.kills - train_kills, trained))
    wall = time.perf_counter() - start
    report(phases, wall, args)
    print(f"work dir: {work}" + ("" if args.keep or args.workdir else " (removed; --keep keeps it)"))
    if args.workdir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p.ok for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
