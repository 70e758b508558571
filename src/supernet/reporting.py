"""Run reports: one self-contained HTML page and a Markdown file describing a run directory.

`report` (``sn.report``, ``supernet report RUN_DIR``) reads what the other commands wrote and draws it:

- the config (``pipeline.json`` of ``supernet train``, else ``run.json``'s space, strategy and training config);
- the training curves (``metrics.jsonl``: loss, validation losses, learning rate, the strategy's own metrics);
- the Pareto plot and front (``search/pareto.json`` with every evaluated arch from ``search/trials.csv``);
- the alpha history of a gradient run (``alpha_history.json``: each decision's option probabilities by step);
- the ranking scatter of a ``supernet bench nb201`` output directory (``report.json``: supernet vs table accuracy);
- the card of each exported model (``model.json`` of ``supernet export``) and how to load it.

A section without data is left out with a one-line note saying which file it would have come from; nothing is
invented. Figures are drawn with matplotlib (Agg) from the data, embedded in the HTML as base64 PNG (no external
asset, no script), and written as PNG files beside the Markdown (``<name>-figures/``), since Markdown viewers
rarely show ``data:`` images. Every file is written atomically; a damaged input file is a one-line
`supernet.files.FileFormatError` naming it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .files import FileFormatError, FileModel, read_json, read_jsonl, read_text, write_bytes, write_text
from .training.checkpoint import METRICS, PIPELINE_JSON, RUN_JSON, read_run_json
from .version import __version__

REPORT_HTML = "report.html"
ALPHA_HISTORY = "alpha_history.json"
BENCH_REPORT = "report.json"
BENCH_SETTINGS = "bench.json"
MODEL_JSON = "model.json"
MAX_FRONT_ROWS = 20
MAX_ALPHA_PANELS = 24
MAX_EXTRA_CURVES = 6
# Keys of a metrics.jsonl record that are not drawn as curves of their own.
_NOT_CURVES = {"step", "loss", "lr", "samples_per_s", "archs_per_step", "val_loss_max", "val_loss_min"}


# ---------------------------------------------------------------- the report's building blocks


@dataclass
class Figure:
    """A PNG figure of the report.

    Attributes:
        name: a short identifier (file name of the PNG beside the Markdown, ``data-figure`` in the HTML).
        title: the caption.
        png: the PNG bytes.
    """

    name: str
    title: str
    png: bytes


@dataclass
class Table:
    """A table: a header row and rows of already formatted cells."""

    header: list[str]
    rows: list[list[str]]


@dataclass
class Code:
    """A preformatted block (YAML, JSON, Python); with a ``summary``, the HTML folds it under that line."""

    text: str
    language: str = ""
    summary: str | None = None


Block = str | Figure | Table | Code


@dataclass
class Section:
    """One section of the report: its blocks, or, when there is no data for it, a one-line ``note`` instead."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    note: str | None = None


@dataclass
class RunReport:
    """A report built from a run directory, before it is written.

    Attributes:
        title: the page title.
        source: the directory it describes.
        sections: in page order; those without data carry only a note.
    """

    title: str
    source: Path
    sections: list[Section]
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def figures(self) -> list[Figure]:
        """Every figure, in page order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    @property
    def notes(self) -> list[str]:
        """The one-line notes of the sections left out."""
        return [s.note for s in self.sections if s.note]

    def to_html(self) -> str:
        """The report as one self-contained HTML page (figures as base64 PNG ``data:`` URIs)."""
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{e(self.title)}</h1>",
            f'<p class="meta">{e(str(self.source))} &middot; generated {e(self.generated)} by supernet '
            f"{e(__version__)}</p>",
        ]
        contents = [s for s in self.sections if not s.note]
        if contents:
            parts.append("<nav><ul>" + "".join(f'<li><a href="#{s.key}">{e(s.title)}</a></li>' for s in contents))
            parts.append("</ul></nav>")
        for s in self.sections:
            if s.note:
                parts.append(f'<p class="note" data-omitted="{e(s.key)}">{_inline_code(e(s.note))}</p>')
                continue
            parts.append(f'<section id="{e(s.key)}">')
            parts.append(f"<h2>{e(s.title)}</h2>")
            for b in s.blocks:
                parts.append(_block_html(b))
            parts.append("</section>")
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)

    def to_markdown(self, figure_dir: str) -> str:
        """The report as Markdown; figures are linked as ``figure_dir/<name>.png`` (relative to the file)."""
        lines = [
            f"# {self.title}",
            "",
            f"`{self.source}`, generated {self.generated} by supernet {__version__}.",
            "",
        ]
        for s in self.sections:
            if s.note:
                lines += [f"_{s.note}_", ""]
                continue
            lines += [f"## {s.title}", ""]
            for b in s.blocks:
                lines += [_block_markdown(b, figure_dir), ""]
        return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;"
    "padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}"
    ".meta{color:#666;margin-top:0}.note{color:#777;font-style:italic}"
    "nav ul{padding-left:1.2em;margin:.5em 0}"
    "table{border-collapse:collapse;margin:.8em 0;font-size:.92em}"
    "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f5f5f5}"
    "pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.88em;border-radius:4px}"
    "figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}"
    "figcaption{color:#555;font-size:.9em}summary{cursor:pointer;margin:.6em 0}"
)


def _block_html(b: Block) -> str:
    e = html.escape
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.title)}" data-figure="{e(b.name)}">'
            f"<figcaption>{e(b.title)}</figcaption></figure>"
        )
    if isinstance(b, Table):
        head = "".join(f"<th>{e(h)}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Code):
        cls = f' class="language-{e(b.language)}"' if b.language else ""
        pre = f"<pre><code{cls}>{e(b.text)}</code></pre>"
        if b.summary:
            return f"<details><summary>{_inline_code(e(b.summary))}</summary>{pre}</details>"
        return pre
    return f"<p>{_inline_code(e(b))}</p>"


def _inline_code(escaped: str) -> str:
    """Markdown's `code` spans of already escaped text as <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _block_markdown(b: Block, figure_dir: str) -> str:
    if isinstance(b, Figure):
        return f"![{b.title}]({figure_dir}/{b.name}.png)"
    if isinstance(b, Table):

        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(cell(h) for h in b.header) + " |", "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
        return "\n".join(lines)
    if isinstance(b, Code):
        fence = f"```{b.language}\n{b.text.rstrip()}\n```"
        return f"{b.summary}:\n\n{fence}" if b.summary else fence
    return b


# ---------------------------------------------------------------- the shapes of the files read


class _AlphaStep(FileModel):
    step: int
    probs: dict[str, list[float]]


class AlphaHistoryFile(FileModel):
    """``alpha_history.json`` of a gradient run (see `supernet.gradient.base`)."""

    method: str = "gradient"
    final_arch: dict[str, Any] | None = None
    options: dict[str, list[Any]]
    history: list[_AlphaStep]


class _BenchArch(FileModel):
    key: str
    role: str = "sampled"
    predicted_accuracy: float
    true: float


class BenchReportFile(FileModel):
    """The parts of a ``supernet bench nb201`` ``report.json`` the run report shows."""

    format: Literal["supernet-bench"]
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    floors: dict[str, Any] = Field(default_factory=dict)
    verdict: str | None = None
    archs: list[_BenchArch]


# ---------------------------------------------------------------- building and writing


def report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write the report of a run as one self-contained HTML page and a Markdown file; returns the HTML's path.

    Args:
        run_dir: a training run directory (``run.json``: ``supernet train`` / ``sn.train`` / ``supernet demo``), or
            a ``supernet bench nb201`` output directory (``bench.json`` / ``report.json``, its run in ``train/``).
        out: the HTML file to write (a path ending in ``.html``), or a directory to write ``report.html`` into
            (default: ``run_dir``). The Markdown goes beside it with the suffix ``.md``, its figures as PNG files
            in ``<name>-figures/``.
        model: exported model directories to show (default: the config's ``export.out`` and every directory
            directly inside ``run_dir`` that holds a ``model.json``).

    Returns:
        The path of the HTML file.

    Raises:
        FileNotFoundError: ``run_dir`` is no run directory, or a given model directory has no ``model.json``.
        supernet.files.FileFormatError: a file of the run is damaged (the message names it).
    """
    html_path, _ = write_report(build_report(run_dir, model=model), out)
    return html_path


def build_report(
    run_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> RunReport:
    """Read a run directory (see `report`) and build its report without writing anything."""
    source = Path(run_dir)
    run, bench = _locate(source)
    meta = read_run_json(run) if run is not None else None
    pipeline = _read_pipeline(run) if run is not None else None
    bench_report = _read_bench(bench) if bench is not None else None
    models = _model_dirs(source, run, bench, pipeline, model)
    sections = [
        _config_section(run, meta, pipeline, bench, bench_report),
        _training_section(run),
        _search_section(run),
        _alpha_section(run),
        _ranking_section(bench, bench_report),
        *_model_sections(models),
    ]
    kind = "bench run" if bench is not None else "run"
    return RunReport(title=f"supernet {kind} report: {source.resolve().name}", source=source, sections=sections)


def write_report(rep: RunReport, out: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``rep`` (see `report` for ``out``); returns the HTML and Markdown paths. Figures first, HTML last."""
    html_path = _html_path(rep.source, out)
    md_path = html_path.with_suffix(".md")
    figure_dir = f"{html_path.stem}-figures"
    for fig in rep.figures:
        write_bytes(html_path.parent / figure_dir / f"{fig.name}.png", fig.png)
    write_text(md_path, rep.to_markdown(figure_dir))
    write_text(html_path, rep.to_html())
    return html_path, md_path


def _html_path(source: Path, out: str | os.PathLike[str] | None) -> Path:
    if out is None:
        return source / REPORT_HTML
    path = Path(out)
    if path.suffix.lower() in (".html", ".htm"):
        return path
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: the report's out must be a directory or a path ending in .html")
    return path / REPORT_HTML


def _locate(path: Path) -> tuple[Path | None, Path | None]:
    """``(training run dir, bench output dir)`` behind ``path`` (either may be None, not both)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run directory)")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory (expected a run directory)")
    if (path / RUN_JSON).is_file():
        parent = path.parent
        if path.name == "train" and (parent / BENCH_SETTINGS).is_file():  # the training run of a benchmark
            return path, parent
        return path, None
    if (path / BENCH_SETTINGS).is_file() or (path / BENCH_REPORT).is_file():
        train = path / "train"
        return (train if (train / RUN_JSON).is_file() else None), path
    raise FileNotFoundError(
        f"{path} is not a run directory (no {RUN_JSON} of `supernet train`, nor {BENCH_SETTINGS} of `supernet bench`)"
    )


def _read_pipeline(run: Path) -> dict[str, Any] | None:
    path = run / PIPELINE_JSON
    if not path.is_file():
        return None
    data = read_json(path, dict[str, Any], "pipeline config (pipeline.json)")
    return dict(data)


def _read_bench(bench: Path) -> dict[str, Any] | None:
    path = bench / BENCH_REPORT
    if not path.is_file():
        return None
    return dict(read_json(path, BenchReportFile, "supernet bench report.json"))


# ---------------------------------------------------------------- sections


def _config_section(
    run: Path | None,
    meta: Mapping[str, Any] | None,
    pipeline: Mapping[str, Any] | None,
    bench: Path | None,
    bench_report: Mapping[str, Any] | None,
) -> Section:
    sec = Section("config", "Config")
    rows: list[list[str]] = []
    if meta is not None:
        spec = meta.get("space") or {}
        strategy = meta.get("strategy") or {}
        config = meta.get("config") or {}
        task = meta.get("task") or {}
        dataset = (task.get("dataset") or {}).get("name")
        rows += [
            ["run directory", str(run)],
            ["space", _space_text(spec)],
            ["decisions", str(len(meta.get("choices") or {})) if meta.get("choices") else "-"],
            ["strategy", _kwargs_text(strategy.get("name", config.get("strategy", "-")), strategy.get("options"))],
            ["steps", f"{_fmt(meta.get('step', 0))} of {_fmt(config.get('steps'))}"],
            ["status", str(meta.get("status", "-"))],
            ["task", f"{task.get('kind', '-')}" + (f" on {dataset}" if dataset else "")],
        ]
        if meta.get("final_arch"):
            rows.append(["selected arch", _arch_text(meta["final_arch"])])
        versions = meta.get("versions") or {}
        if versions:
            rows.append(["versions", ", ".join(f"{k} {v}" for k, v in versions.items())])
    if bench is not None:
        rows.append(["benchmark directory", str(bench)])
    if rows:
        sec.blocks.append(Table(["item", "value"], rows))
    if pipeline is not None:
        sec.blocks.append(Code(_yaml(pipeline), "yaml", "The config as `supernet train` resolved it (pipeline.json)"))
    elif meta is not None:
        given = {"space": meta.get("space"), "strategy": meta.get("strategy"), "train": meta.get("config")}
        sec.blocks.append(Code(_yaml(given), "yaml", "The run's space, strategy and training config (run.json)"))
    if bench_report is not None:
        sec.blocks.append(Code(_yaml(bench_report.get("config", {})), "yaml", "The benchmark's settings (report.json)"))
    elif bench is not None and (bench / BENCH_SETTINGS).is_file():
        settings = read_json(bench / BENCH_SETTINGS, dict[str, Any], "supernet bench settings (bench.json)")
        sec.blocks.append(Code(_yaml(settings), "yaml", "The benchmark's settings (bench.json)"))
    return sec


def _training_section(run: Path | None) -> Section:
    sec = Section("training", "Training curves")
    if run is None:
        sec.note = "No training curves: the benchmark has no training run yet (no train/run.json)."
        return sec
    records = [r for r in read_jsonl(run / METRICS) if _number(r.get("step")) is not None]
    if not records:
        sec.note = f"No training curves: {run / METRICS} is absent or holds no logged step."
        return sec
    records.sort(key=lambda r: r["step"])
    png = _plot_training(records)
    if png is None:
        sec.note = f"No training curves: {run / METRICS} logs no numeric metric."
        return sec
    plural = "s" if len(records) != 1 else ""
    sec.blocks.append(Figure("training", f"Training curves ({len(records)} logged step{plural})", png))
    last = records[-1]
    shown = [k for k, v in last.items() if k != "step" and _number(v) is not None]
    sec.blocks.append(f"Last logged step: {int(last['step']):,}.")
    sec.blocks.append(Table(["metric", "value"], [[k, _fmt(last[k])] for k in shown]))
    return sec


def _search_section(run: Path | None) -> Section:
    sec = Section("search", "Search: Pareto front")
    search_dir = (run / "search") if run is not None else None
    if search_dir is None or not (search_dir / "pareto.json").is_file():
        where = f"{search_dir / 'pareto.json'}" if search_dir is not None else "search/pareto.json"
        sec.note = f"No Pareto plot: no search results ({where} is absent; `supernet search RUN_DIR` makes them)."
        return sec
    from .searching.results import load_front

    pareto = load_front(search_dir / "pareto.json")
    front = list(pareto["front"])
    objectives = [(o["metric"], o["direction"]) for o in pareto["objectives"]]
    entries = _read_trials(search_dir / "trials.csv") or front
    metrics = list(dict.fromkeys([m for m, _ in objectives] + [m for e in front for m in e["metrics"]]))
    usable = [e for e in entries if all(_number(e["metrics"].get(m)) is not None for m, _ in objectives[:2])]
    summary = (
        f"{pareto['algorithm']} over {', '.join(f'{m} ({d[:3]})' for m, d in objectives)}: "
        f"{pareto.get('distinct_archs', len(entries))} distinct archs evaluated, {len(front)} on the front"
    )
    if pareto.get("constraints"):
        summary += f", under {', '.join(pareto['constraints'])}"
    sec.blocks.append(summary + ".")
    if pareto.get("message"):
        sec.blocks.append(str(pareto["message"]))
    if usable and objectives:
        sec.blocks.append(Figure("pareto", summary, _plot_pareto(usable, front, objectives)))
    else:
        sec.blocks.append("No evaluated arch has every objective's value: nothing to plot.")
    rows = [
        [str(i), *(_fmt(e["metrics"].get(m), m) for m in metrics), _arch_text(_active(e))]
        for i, e in enumerate(front[:MAX_FRONT_ROWS])
    ]
    sec.blocks.append(Table(["#", *metrics, "arch"], rows))
    if len(front) > MAX_FRONT_ROWS:
        sec.blocks.append(f"{len(front) - MAX_FRONT_ROWS} more front entries in {search_dir / 'pareto.csv'}.")
    return sec


def _alpha_section(run: Path | None) -> Section:
    sec = Section("alphas", "Architecture weights (alpha history)")
    path = run / ALPHA_HISTORY if run is not None else None
    if path is None or not path.is_file():
        sec.note = f"No alpha history: not a gradient run ({path or ALPHA_HISTORY} is absent)."
        return sec
    data = read_json(path, AlphaHistoryFile, "alpha history (alpha_history.json)")
    history = sorted(data["history"], key=lambda h: h["step"])
    options = {k: list(v) for k, v in data["options"].items()}
    names = [n for n in (history[-1]["probs"] if history else {}) if n in options]
    for name in names:
        for h in history:
            if len(h["probs"].get(name, [])) != len(options[name]):
                raise FileFormatError(
                    path,
                    f"step {h['step']}: decision {name!r} has {len(h['probs'].get(name, []))} probabilities "
                    f"for {len(options[name])} options",
                )
    if not names:
        sec.note = f"No alpha history: {path} records no step."
        return sec
    sec.blocks.append(
        f"{data.get('method', 'gradient')}: each decision's option probabilities over {len(history)} recorded "
        f"steps ({len(names)} decisions"
        + (f", the first {MAX_ALPHA_PANELS} drawn" if len(names) > MAX_ALPHA_PANELS else "")
        + ")."
    )
    sec.blocks.append(Figure("alphas", "Option probabilities by training step", _plot_alphas(history, options, names)))
    last = history[-1]["probs"]
    rows = []
    for name in names:
        probs = last[name]
        best = max(range(len(probs)), key=lambda i: probs[i])
        rows.append([name, str(options[name][best]), f"{probs[best]:.3f}"])
    sec.blocks.append(Table(["decision", "most probable option", "probability"], rows))
    if data.get("final_arch"):
        sec.blocks += ["Selected arch:", Code(_json(data["final_arch"]), "json")]
    return sec


def _ranking_section(bench: Path | None, rep: Mapping[str, Any] | None) -> Section:
    sec = Section("ranking", "Ranking against the benchmark table")
    if bench is None:
        sec.note = f"No ranking scatter: not a `supernet bench` run (no {BENCH_SETTINGS} / {BENCH_REPORT})."
        return sec
    if rep is None:
        sec.note = f"No ranking scatter: the benchmark has not finished ({bench / BENCH_REPORT} is absent)."
        return sec
    archs = rep["archs"]
    if not archs:
        sec.note = f"No ranking scatter: {bench / BENCH_REPORT} lists no evaluated arch."
        return sec
    cfg = rep.get("config") or {}
    metric = cfg.get("metric", "true accuracy")
    tau = (rep.get("metrics") or {}).get("kendall_tau") or {}
    title = f"{len(archs)} archs: supernet accuracy vs table {metric}"
    if _number(tau.get("value")) is not None:
        title += f" (Kendall tau {tau['value']:.3f})"
    sec.blocks.append(Figure("ranking", title, _plot_ranking(archs, str(metric))))
    rows = [[name, _estimate(est)] for name, est in (rep.get("metrics") or {}).items()]
    floors = rep.get("floors") or {}
    for name in ("flops_tau", "params_tau"):
        if isinstance(floors.get(name), Mapping):
            rows.append([f"{name} (free floor)", _estimate(floors[name])])
    if rows:
        sec.blocks.append(Table(["metric (sampled archs)", "value [95% CI]"], rows))
    if rep.get("verdict"):
        sec.blocks.append(f"Verdict: {rep['verdict']}.")
    return sec


def _model_sections(models: list[Path]) -> list[Section]:
    if not models:
        return [
            Section(
                "model",
                "Exported model",
                note="No exported model: no model.json in the run directory (`supernet export RUN_DIR` writes one).",
            )
        ]
    from .export import load_metadata, onnx_summary

    sections = []
    for i, path in enumerate(models):
        meta = load_metadata(path)
        key = "model" if i == 0 else f"model-{i + 1}"
        sec = Section(key, f"Exported model: {path}")
        spec = meta.get("space") or {}
        rows = [
            ["directory", str(path)],
            ["space", _space_text(spec) if spec else "user-defined"],
            ["parameters", f"{int(meta.get('params') or 0):,}"],
        ]
        if meta.get("flops") is not None:
            rows.append(["FLOPs (one example)", f"{int(meta['flops']):,}"])
        if meta.get("latency_s") is not None:
            rows.append([f"latency (batch 1, {meta.get('latency_device')})", f"{1000 * meta['latency_s']:.3f} ms"])
        for k, v in (meta.get("metrics") or {}).items():
            rows.append([k, _fmt(v, k)])
        evaluation = meta.get("evaluation") or {}
        if evaluation:
            how = "measured on the exported model" if evaluation.get("measured_on_export") else "from the search"
            rows.append(["metrics", f"{how} ({evaluation.get('split', 'val')} split)"])
        for k, v in (meta.get("found_by") or {}).items():
            rows.append([f"found by: {k}", _fmt(v)])
        for ft in meta.get("finetune") or []:
            rows.append(
                [
                    "fine-tuned",
                    f"{ft.get('steps')} steps: val loss {_fmt(ft.get('val_loss_before'))} -> "
                    f"{_fmt(ft.get('val_loss_after'))}",
                ]
            )
        if meta.get("onnx"):
            rows.append(["ONNX", onnx_summary(meta["onnx"])])
        sec.blocks += [Table(["item", "value"], rows), "Architecture:", Code(_json(meta["arch"]), "json")]
        load = [
            "import supernet as sn",
            "",
            f"model = sn.load({json.dumps(str(path))})   # a plain torch.nn.Module in eval mode, with its weights",
        ]
        if not spec:
            load[-1] = f"model = sn.load({json.dumps(str(path))}, space=my_space)   # user-defined space: pass it"
        if meta.get("onnx"):
            onnx_file = json.dumps(str(path / meta["onnx"].get("file", "model.onnx")))
            load += [
                "",
                "import onnxruntime   # or, outside PyTorch: pip install 'supernet[onnx]'",
                f"session = onnxruntime.InferenceSession({onnx_file})",
            ]
        sec.blocks += ["How to load it:", Code("\n".join(load), "python")]
        sections.append(sec)
    return sections


def _model_dirs(
    source: Path,
    run: Path | None,
    bench: Path | None,
    pipeline: Mapping[str, Any] | None,
    given: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
) -> list[Path]:
    """The exported model directories to show: those given, else the config's export.out and those in the run."""
    if given is not None:
        paths = [Path(given)] if isinstance(given, (str, os.PathLike)) else [Path(p) for p in given]
        for p in paths:
            if not (p / MODEL_JSON).is_file():
                raise FileNotFoundError(
                    f"{p} is not an exported model directory (no {MODEL_JSON}; see `supernet export`)"
                )
        return paths
    found: list[Path] = []
    export_out = ((pipeline or {}).get("export") or {}).get("out")
    if export_out:
        found += [p for p in (Path(export_out), source / export_out) if (p / MODEL_JSON).is_file()]
    for d in (run, bench, source):
        if d is not None and d.is_dir():
            found += sorted(p for p in d.iterdir() if p.is_dir() and (p / MODEL_JSON).is_file())
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _read_trials(path: Path) -> list[dict[str, Any]]:
    """Every evaluated arch of a search from its trials.csv (``[]`` when absent)."""
    if not path.is_file():
        return []
    rows = list(csv.reader(io.StringIO(read_text(path, "search trials (trials.csv)"))))
    if not rows:
        return []
    header = rows[0]
    if len(header) < 3 or header[:2] != ["index", "trial"] or header[-1] != "arch":
        raise FileFormatError(
            path, "is not a trials.csv of `supernet search` (expected columns index, trial, metrics..., arch)"
        )
    names = header[2:-1]
    entries = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise FileFormatError(path, f"line {line} has {len(row)} fields, expected {len(header)}")
        try:
            metrics = {n: (float(v) if v != "" else None) for n, v in zip(names, row[2:-1], strict=True)}
            arch = json.loads(row[-1])
        except (ValueError, json.JSONDecodeError):
            raise FileFormatError(
                path, f"line {line} has a value that is not a number or an arch that is not JSON"
            ) from None
        entries.append({"trial": row[1], "arch": arch, "metrics": metrics})
    return entries


# ---------------------------------------------------------------- figures


def _new_figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=100)


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _plot_training(records: Sequence[Mapping[str, Any]]) -> bytes | None:
    steps_of = {}
    keys = list(dict.fromkeys(k for r in records for k in r))
    for k in keys:
        pts = [(r["step"], float(r[k])) for r in records if _number(r.get(k)) is not None]
        if pts:
            steps_of[k] = pts
    extras = [k for k in keys if k not in _NOT_CURVES and not k.startswith("val_loss") and k in steps_of]
    extras = extras[:MAX_EXTRA_CURVES]
    panels: list[tuple[str, list[str]]] = []
    losses = [k for k in keys if (k == "loss" or k.startswith("val_loss")) and k in steps_of]
    if losses:
        panels.append(("loss", losses))
    if "lr" in steps_of:
        panels.append(("learning rate", ["lr"]))
    panels += [(k, [k]) for k in extras]
    if not panels and "samples_per_s" in steps_of:
        panels.append(("samples/s", ["samples_per_s"]))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _new_figure(4.2 * cols, 3.0 * rows)
    labels = {
        "loss": "train loss",
        "val_loss_max": "val loss (largest arch)",
        "val_loss_min": "val loss (smallest arch)",
        "val_loss": "val loss",
    }
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for k in series:
            pts = steps_of[k]
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o" if len(pts) < 30 else None,
                markersize=3,
                label=labels.get(k, k),
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    return _png(fig)


def _plot_pareto(
    entries: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]]
) -> bytes:
    fig = _new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    if len(objectives) >= 2:
        (ym, yd), (xm, xd) = objectives[0], objectives[1]
        ax.scatter(
            [e["metrics"][xm] for e in entries],
            [e["metrics"][ym] for e in entries],
            s=16,
            alpha=0.45,
            color="tab:gray",
            label=f"evaluated ({len(entries)})",
        )
        pts = sorted(
            (float(f["metrics"][xm]), float(f["metrics"][ym]))
            for f in front
            if _number(f["metrics"].get(xm)) is not None and _number(f["metrics"].get(ym)) is not None
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:red", label=f"Pareto front ({len(pts)})")
        ax.set_xlabel(f"{xm} ({xd[:3]})")
        ax.set_ylabel(f"{ym} ({yd[:3]})")
        if xm in ("params", "flops") and pts and min(p[0] for p in pts) > 0:
            lo = min(float(e["metrics"][xm]) for e in entries)
            hi = max(float(e["metrics"][xm]) for e in entries)
            if lo > 0 and hi / lo > 20:
                ax.set_xscale("log")
        ax.legend(loc="best", fontsize=8)
    else:
        m, d = objectives[0]
        ax.plot(range(len(entries)), [e["metrics"][m] for e in entries], "o", color="tab:gray", markersize=4)
        ax.set_xlabel("evaluated arch (in trial order)")
        ax.set_ylabel(f"{m} ({d[:3]})")
    ax.grid(alpha=0.3)
    return _png(fig)


def _plot_alphas(
    history: Sequence[Mapping[str, Any]], options: Mapping[str, Sequence[Any]], names: Sequence[str]
) -> bytes:
    names = list(names)[:MAX_ALPHA_PANELS]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _new_figure(3.4 * cols, 2.5 * rows)
    steps = [h["step"] for h in history]
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        for i, opt in enumerate(options[name]):
            ax.plot(
                steps,
                [h["probs"][name][i] for h in history],
                marker="o" if len(steps) < 30 else None,
                markersize=3,
                label=str(opt),
            )
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return _png(fig)


def _plot_ranking(archs: Sequence[Mapping[str, Any]], metric: str) -> bytes:
    fig = _new_figure(5.8, 4.6)
    ax = fig.add_subplot()
    styles = {"sampled": ("tab:blue", "o", 18), "best": ("tab:green", "*", 90), "worst": ("tab:red", "X", 60)}
    for role in dict.fromkeys([*styles, *(a["role"] for a in archs)]):
        idx = [a for a in archs if a["role"] == role]
        if not idx:
            continue
        color, marker, size = styles.get(role, ("tab:purple", "o", 18))
        label = role if role == "sampled" else f"table {role}" if role in styles else role
        ax.scatter(
            [a["predicted_accuracy"] for a in idx],
            [a["true"] for a in idx],
            c=color,
            marker=marker,
            s=size,
            alpha=0.8,
            label=label,
        )
    ax.set_xlabel("supernet accuracy (held-out, %)")
    ax.set_ylabel(f"table {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


# ---------------------------------------------------------------- formatting


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _fmt(v: Any, name: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)) and name in ("params", "flops") and math.isfinite(v):
        return f"{int(v):,}"
    if isinstance(v, (int, float)) and name == "latency" and math.isfinite(v):
        return f"{1000 * v:.3g} ms"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _estimate(est: Any) -> str:
    if not isinstance(est, Mapping) or _number(est.get("value")) is None:
        return "n/a"
    v, lo, hi = est["value"], _number(est.get("low")), _number(est.get("high"))
    return f"{v:.3f}" if lo is None or hi is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def _yaml(obj: Any) -> str:
    """``obj`` as block YAML with short lists inline (the shape of a `supernet train` config)."""
    import yaml

    return yaml.safe_dump(json.loads(_json(obj)), sort_keys=False, default_flow_style=None, width=100)


def _active(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    key = entry.get("key")
    if isinstance(key, str):
        try:
            active = json.loads(key)
        except json.JSONDecodeError:
            active = None
        if isinstance(active, dict):
            return active
    return entry["arch"]


def _arch_text(arch: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in arch.items())


def _kwargs_text(name: Any, kwargs: Mapping[str, Any] | None) -> str:
    if not kwargs:
        return str(name)
    return f"{name}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in kwargs.items()) + ")"


def _space_text(spec: Mapping[str, Any]) -> str:
    if not spec:
        return "built by hand (no spec)"
    return _kwargs_text(spec.get("space", spec.get("name", "?")), spec.get("kwargs"))
