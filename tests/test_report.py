"""`supernet report` / `sn.report`: the HTML page and Markdown file of a run, checked in a headless browser.

Two tiny runs feed every section: a GPT run made by ``supernet train`` + ``search`` + ``export`` (config, curves,
Pareto plot, model card), and a ``supernet bench``-shaped directory whose ``train/`` is a real DrNAS run (alpha
history) next to a small hand-written ``report.json`` (ranking scatter; the real benchmark needs CIFAR-10).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import subprocess
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

import supernet as sn
from supernet.cli import main
from supernet.files import FileFormatError
from tiny_spaces import TINY_GPT_RUN_YAML, tiny_space

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT run: trained (2 steps), searched (3 archs) and exported into RUN/model, all by the CLI."""
    root = tmp_path_factory.mktemp("gpt")
    cfg = root / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=root / "run", search="algorithm: random, trials: 3"))
    run = root / "run"
    assert main(["train", str(cfg)]) == 0
    assert main(["search", str(run), "--no-progress"]) == 0
    assert main(["export", str(run), "--latency-device", "cpu"]) == 0
    return run


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `supernet bench nb201`-shaped directory: a DrNAS training run in train/ and a small report.json."""
    root = tmp_path_factory.mktemp("bench") / "bench"
    torch.manual_seed(0)
    sn.train(
        tiny_space("gpt", vocab_size=65),
        sn.data.shakespeare(),
        strategy="drnas",
        config={"steps": 3, "batch_size": 2, "log_every": 1, "progress": False, "tensorboard": False},
        run_dir=root / "train",
        device="cpu",
    )
    archs = [
        {"key": f"arch{i}", "role": "sampled", "sampled": True, "predicted_accuracy": 20.0 + i, "true": 60.0 + 2 * i}
        for i in range(8)
    ]
    archs += [
        {"key": "top", "role": "best", "predicted_accuracy": 30.0, "true": 94.0},
        {"key": "bottom", "role": "worst", "predicted_accuracy": 5.0, "true": 10.0},
    ]
    report = {
        "format": "supernet-bench",
        "version": 1,
        "config": {"strategy": "drnas", "preset": "tiny", "seed": 0, "metric": "val_acc_200"},
        "metrics": {"kendall_tau": {"value": 1.0, "low": 1.0, "high": 1.0}},
        "floors": {"flops_tau": {"value": 0.5, "low": 0.2, "high": 0.7}},
        "verdict": "the supernet ranks better than FLOPs",
        "archs": archs,
    }
    (root / "bench.json").write_text(json.dumps({"preset": "tiny"}))
    (root / "report.json").write_text(json.dumps(report))
    return root


class _Images(HTMLParser):
    """The attributes of every <img>, of <body>, and the omitted-section notes of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self.omitted: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        elif tag == "body":
            self.body = a
        if "data-omitted" in a:
            self.omitted.append(a["data-omitted"])
        self.links += [a[k] for k in ("src", "href") if k in a]


def parse(html: str) -> _Images:
    p = _Images()
    p.feed(html)
    return p


def png_size(data_uri: str) -> tuple[int, int]:
    """Width and height of the PNG in a ``data:image/png;base64,`` URI (fully decoded: damage fails)."""
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix), data_uri[:60]
    png = base64.b64decode(data_uri[len(prefix) :], validate=True)
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    with Image.open(io.BytesIO(png)) as decoded:
        decoded.load()
        assert decoded.size == struct.unpack(">II", png[16:24])
        return decoded.size


def check_self_contained(page: _Images) -> None:
    """Nothing the page shows comes from elsewhere: images are data: URIs, links are in-page anchors."""
    for link in page.links:
        assert link.startswith(("data:image/png;base64,", "#")), link[:80]


def test_report_of_a_train_search_export_run(gpt_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = sn.report(gpt_run)
    assert out == gpt_run / "report.html"
    html = out.read_text(encoding="utf-8")
    page = parse(html)
    assert [i["data-figure"] for i in page.images] == ["training", "pareto"]
    for img in page.images:
        w, h = png_size(img["src"])
        assert w > 100 and h > 100
    check_self_contained(page)
    assert "<script" not in html and "<link" not in html
    assert sorted(page.omitted) == ["alphas", "ranking"]
    assert "No alpha history: not a gradient run" in html and "No ranking scatter: not a <code>supernet bench" in html
    for section in ('id="config"', 'id="training"', 'id="search"', 'id="model"'):
        assert section in html
    assert "algorithm: random" in html  # the config, from pipeline.json
    assert escape(f"sn.load({json.dumps(str(gpt_run / 'model'))})") in html
    meta = json.loads((gpt_run / "model" / "model.json").read_text())
    assert f"{meta['params']:,}" in html
    # the CLI writes the same report elsewhere and says what it left out
    capsys.readouterr()
    assert main(["report", str(gpt_run), "--out", str(gpt_run.parent / "elsewhere" / "r.html")]) == 0
    said = capsys.readouterr().out
    assert "2 figures" in said and "No alpha history" in said
    assert (gpt_run.parent / "elsewhere" / "r.html").is_file()
    assert (gpt_run.parent / "elsewhere" / "r.md").is_file()
    assert (gpt_run.parent / "elsewhere" / "r-figures" / "pareto.png").is_file()


def test_markdown_report(gpt_run: Path) -> None:
    sn.report(gpt_run)
    md = (gpt_run / "report.md").read_text(encoding="utf-8")
    for heading in ("## Config", "## Training curves", "## Search: Pareto front", f"## Exported model: {gpt_run}"):
        assert heading in md
    assert "_No alpha history: not a gradient run" in md and "_No ranking scatter:" in md
    for name in ("training", "pareto"):
        link = f"report-figures/{name}.png"
        assert f"]({link})" in md
        assert (gpt_run / link).read_bytes()[:8] == PNG_SIGNATURE
    front = json.loads((gpt_run / "search" / "pareto.json").read_text())["front"]
    assert f"| 0 | {front[0]['metrics']['loss']:.4g} |" in md
    assert "```python\nimport supernet as sn" in md and f'sn.load("{gpt_run / "model"}")' in md
    assert "```yaml\n" in md
    assert "data:image" not in md  # figures are files beside the Markdown


def test_bench_report_has_alphas_and_ranking(bench_dir: Path) -> None:
    html = sn.report(bench_dir).read_text(encoding="utf-8")
    page = parse(html)
    assert [i["data-figure"] for i in page.images] == ["training", "alphas", "ranking"]
    assert sorted(page.omitted) == ["model", "search"]
    assert "Kendall tau 1.000" in html and "the supernet ranks better than FLOPs" in html
    assert "flops_tau (free floor)" in html
    # pointing at the benchmark's training run finds the benchmark too
    rep = sn.reporting.build_report(bench_dir / "train")
    assert [f.name for f in rep.figures] == ["training", "alphas", "ranking"]


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match=r"is not a run directory \(no run\.json"):
        sn.report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"supernet report: error: {tmp_path} is not a run directory (no run.json of `supernet train`, nor "
        "bench.json of `supernet bench`)"
    )
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


@pytest.mark.parametrize(
    ("damaged", "content"),
    [
        ("run.json", '{"format": "supernet-run", '),
        ("search/pareto.json", "[1, 2"),
        ("search/trials.csv", "index,trial,loss,params,arch\n0,0,abc,1,{}\n"),
        ("model/model.json", '{"format": "supernet-model"}'),
        ("pipeline.json", "\x00not json"),
    ],
)
def test_damaged_file_is_named(
    gpt_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damaged: str, content: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(gpt_run, run, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.safetensors"))
    (run / damaged).write_text(content)
    with pytest.raises(FileFormatError) as info:
        sn.report(run)
    assert info.value.path == run / damaged
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"supernet report: error: {run / damaged}: ")
    assert len(err) == 2  # the message, then the --debug hint


def test_damaged_alpha_history_is_named(bench_dir: Path, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(bench_dir, bench, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.safetensors"))
    path = bench / "train" / "alpha_history.json"
    data = json.loads(path.read_text())
    data["history"][0]["probs"] = "oops"
    path.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=r"alpha_history\.json: not a valid alpha history"):
        sn.report(bench)


# ---------------------------------------------------------------- in a browser


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no headless Chromium: `make test` installs Debian's `chromium` package when missing (apt-get, needs root "
        "or passwordless sudo and the network); it could not be installed here"
    )


# Marks each image with what the browser made of it once the page (and every data: image) has loaded.
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-complete", String(img.complete));
    img.setAttribute("data-natural-width", String(img.naturalWidth));
    img.setAttribute("data-natural-height", String(img.naturalHeight));
    img.setAttribute("data-shown-width", String(img.getBoundingClientRect().width));
    // the share of pixels the browser drew that are neither blank white nor transparent
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    let ink = 0;
    if (canvas.width && canvas.height) {
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] > 0 && (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250)) ink++;
      }
      ink /= canvas.width * canvas.height;
    }
    img.setAttribute("data-ink", String(ink));
  }
  document.body.setAttribute("data-probed", String(document.images.length));
});
</script>
"""


def rendered_images(browser: str, html_path: Path, tmp_path: Path) -> _Images:
    """The page as headless Chromium rendered it (DOM dumped after load, the probe's attributes included)."""
    page = tmp_path / f"probe-{html_path.parent.name}.html"
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",  # needed as root (CI containers); the page is our own file
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr[-2000:]
    dom = parse(done.stdout)
    assert dom.body.get("data-probed") == str(len(dom.images)), "the probe did not run: " + done.stdout[:500]
    return dom


@pytest.mark.parametrize("which", ["gpt_run", "bench_dir"])
def test_every_figure_renders_in_chromium(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    browser = _browser()
    run = request.getfixturevalue(which)
    rep = sn.reporting.build_report(run)
    html_path, _ = sn.reporting.write_report(rep, tmp_path / which)
    expected = [f.name for f in rep.figures]
    assert expected == (["training", "pareto"] if which == "gpt_run" else ["training", "alphas", "ranking"])
    dom = rendered_images(browser, html_path, tmp_path)
    assert [i.get("data-figure") for i in dom.images] == expected
    for img in dom.images:
        width, height = png_size(img["src"])
        assert img["data-complete"] == "true", img["data-figure"]
        assert (int(img["data-natural-width"]), int(img["data-natural-height"])) == (width, height), img["data-figure"]
        assert float(img["data-shown-width"]) > 100, img["data-figure"]  # laid out on the page, not collapsed
        assert float(img["data-ink"]) > 0.01, img["data-figure"]  # drawn: not blank (a damaged PNG draws nothing)
    check_self_contained(dom)
