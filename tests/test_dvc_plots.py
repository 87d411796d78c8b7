"""DVC's plots on the pipeline's data: interactive Vega-Lite charts of the loss curves and the scale
curves besides the report's PNGs, and a page that draws them with no network. (`dvc plots diff`
of two learning-rate experiments is in test_pipeline's lr test, which runs the second one.)

Run: python -m pytest tests/test_dvc_plots.py -q   (reuses the session's pipeline run)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.dvc_repo import REFERENCES, RUNS, back_to_first_run, dvc
from support.local import launch_chromium

pytestmark = pytest.mark.slow  # DVC plots in a real browser

LOSS_PLOTS = {"train_loss": "train_loss", "eval_loss": "eval_loss"}
SCALE_PLOTS = {"nll": "nll", "rouge_l": "rouge-l", "bleu": "bleu"}
IMAGES = [f"plots/{name}.png" for name in ("scaling", "data_card", "loss_curves", "data_scale_comparison", "method_comparison")]
VENDORED = {"vega": "5.33.1", "vegaLite": "5.23.0", "vegaEmbed": "6.29.0"}  # .dvc/plots/THIRD_PARTY_LICENSES.md


def numbers(rows: list[dict], field: str, run: str) -> list[float]:
    """The values DVC hands the chart for one run, as strings from the CSV; empty where the run has no point."""
    return [float(r[field]) for r in rows if r["run"] == run and r[field] != ""]


def remote_scripts(html: str) -> list[str]:
    """Every script the page would fetch: <script src=...>, and any http(s) URL of a .js file."""
    return re.findall(r"<script[^>]*\bsrc\s*=[^>]*>", html, flags=re.I) + re.findall(r"https?://[^\s\"'<>]+\.m?js\b", html)


def test_plots_show_lists_vega_lite_charts_of_the_curves_and_the_scale_besides_the_images(repo, first_run):
    back_to_first_run(repo, first_run)
    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    plots = shown["data"]
    for name in [*LOSS_PLOTS, *SCALE_PLOTS]:
        (plot,) = plots[name]
        assert plot["type"] == "vega" and plot["content"]["$schema"].endswith("/vega-lite/v5.json"), name
    for image in IMAGES:
        assert [p["type"] for p in plots[image]] == ["image"], image
    for name, field in LOSS_PLOTS.items():  # every run's curve, a point per line of its DVCLive log
        rows = plots[name][0]["content"]["data"]["values"]
        assert {r["run"] for r in rows} == set(RUNS) and {r["rev"] for r in rows} == {"workspace"}
        for run in RUNS:
            log = repo / f"dvclive/{run}/plots/metrics/{field.split('_')[0]}/loss.tsv"
            logged = [float(line.split("\t")[1]) for line in log.read_text().splitlines()[1:]]
            assert numbers(rows, field, run) == pytest.approx(logged, abs=1e-4), (name, run)
    eval_rows = plots["eval_loss"][0]["content"]["data"]["values"]
    for run in RUNS:  # the best checkpoint is the one with the lowest eval loss
        best = json.loads((repo / f"metrics/train/{run}.json").read_text())["best_eval_loss"]
        assert min(numbers(eval_rows, "eval_loss", run)) == pytest.approx(best, abs=1e-4), run
    for name, field in SCALE_PLOTS.items():  # one point per setup, with its interval, and the references
        rows = plots[name][0]["content"]["data"]["values"]
        assert {r["run"] for r in rows} == {run.rsplit("-", 1)[0] for run in RUNS} | set(REFERENCES)
        for run in RUNS:
            folder = "likelihood" if field == "nll" else "evaluate"  # the NLL has its own metrics file
            scores = json.loads((repo / f"metrics/{folder}/{run}.json").read_text())  # one seed: the setup's own
            (row,) = [r for r in rows if r["run"] == run.rsplit("-", 1)[0]]
            assert float(row[field]) == pytest.approx(scores[field], abs=1e-4), (name, run)
            assert float(row[f"{field}_low"]) == pytest.approx(scores["interval"][field]["low"], abs=1e-4)
            assert float(row[f"{field}_high"]) == pytest.approx(scores["interval"][field]["high"], abs=1e-4)


def draw_offline(page_file: Path) -> dict:
    """Open the page in headless Chromium with every request off this machine refused; what it drew."""
    from playwright.sync_api import sync_playwright

    refused, errors = [], []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.route(re.compile(r"^(?!file:|data:)"), lambda route: (refused.append(route.request.url), route.abort()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(page_file.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('.vega-embed .marks').length >= 4",
                               timeout=30_000)
        drawn = {"charts": page.locator(".vega-embed .marks").count(),
                 "images": page.locator("img").count(),
                 "versions": page.evaluate("({vega: vega.version, vegaLite: vegaLite.version, vegaEmbed: vegaEmbed.version})")}
        browser.close()
    return {**drawn, "refused": refused, "errors": errors}


@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "show", "--html-template", ".dvc/plots/offline.html"]],
                         ids=["configured", "explicit-template"])
def test_the_readme_commands_write_a_page_that_draws_every_chart_with_no_network(repo, first_run, tmp_path, command):
    back_to_first_run(repo, first_run)
    out = tmp_path / "plots"
    dvc(repo, *command, "-o", str(out))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert remote_scripts(html) == [] and "cdn.jsdelivr" not in html
    drawn = draw_offline(out / "index.html")
    assert drawn["refused"] == [] and drawn["errors"] == [], drawn
    assert drawn["charts"] == 5 and drawn["images"] == len(IMAGES)
    assert drawn["versions"] == VENDORED
    for title in ("Training loss against training samples seen", "ROUGE-L F1 against training samples"):
        assert title in html  # drawn on the canvas, so read from the specs


def test_the_offline_template_inlines_each_library_its_licence_file_names():
    page = Path(__file__).resolve().parents[1] / ".dvc/plots/offline.html"
    html = page.read_text(encoding="utf-8")
    assert remote_scripts(html) == []
    assert html.count("<script>") == 3 and html.count("{plot_divs}") == 1 and "{scripts}" not in html
    licences = (page.parent / "THIRD_PARTY_LICENSES.md").read_text(encoding="utf-8")
    for package, version in (("vega", "5.33.1"), ("vega-lite", "5.23.0"), ("vega-embed", "6.29.0")):
        assert f"<!-- {package} {version}, BSD-3-Clause" in html and f"| {version} |" in licences, package
