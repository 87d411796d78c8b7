"""medqa_scale.evaluate.plots: the summary figures are PNGs, the same bytes for the same table.

Run: python -m pytest tests/test_plots.py -q
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medqa_scale.evaluate.plots import plot_loss_curves, plot_method_comparison, plot_scale_comparison, plot_scaling

PNG = b"\x89PNG\r\n\x1a\n"


def table() -> pd.DataFrame:
    rows = [{"run": "base", "method": "base", "scale": "0", "n_train": 0, "rouge-1": 20.0, "rouge-2": 5.0,
             "rouge-l": 18.0, "bleu": 9.0, "tokens_per_second": 100.0}]
    for method in ("lora", "qlora"):
        for scale, n, score in (("1k", 1000, 30.0), ("2k", 2000, 45.0)):
            rows.append({"run": f"{method}-{scale}", "method": method, "scale": scale, "n_train": n,
                         "rouge-1": score + 5, "rouge-2": score - 5, "rouge-l": score, "bleu": score / 2,
                         "rouge-l_low": score - 4, "rouge-l_high": score + 4, "bleu_low": score / 2 - 2,
                         "bleu_high": score / 2 + 2,
                         "tokens_per_second": 80.0, "best_eval_loss": 2.0, "train_runtime_s": n / 100,
                         "train_peak_memory_mb": 700.0 if method == "lora" else 650.0,
                         "train_peak_memory_kind": "cpu_rss_growth_over_loaded_model",
                         "produced_on": "builtin model, fp32 on CPU (2 cores)"})
    return pd.DataFrame(rows)


def curves() -> pd.DataFrame:
    return pd.DataFrame([{"run": "lora-1k", "series": s, "samples_seen": x, "loss": 3.0 - x / 1000}
                         for s in ("train", "eval") for x in (500.0, 1000.0)])


def test_each_figure_is_a_png_with_the_same_bytes_on_every_run(tmp_path):
    for name, draw, data in (("scale", plot_scale_comparison, table()), ("method", plot_method_comparison, table()),
                             ("curves", plot_loss_curves, curves())):
        a, b = tmp_path / f"{name}-a.png", tmp_path / f"{name}-b.png"
        draw(data, a)
        draw(data, b)
        assert a.read_bytes()[:8] == PNG and len(a.read_bytes()) > 10_000
        assert a.read_bytes() == b.read_bytes(), name  # no timestamp: an unchanged table is an unchanged file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}-{s}.png" for n in ("scale", "method", "curves") for s in "ab")  # no temp leftovers


def test_a_different_table_draws_a_different_figure(tmp_path):
    changed = table()
    changed.loc[changed.run == "lora-2k", "rouge-l"] = 60.0
    plot_scale_comparison(table(), tmp_path / "a.png")
    plot_scale_comparison(changed, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def scaling_fits() -> dict[str, dict[str, dict]]:
    from medqa_scale.evaluate.scaling import scaling_fit

    rng, sizes = np.random.default_rng(0), [1000, 2000, 5000, 10000]
    fits = {}
    for method, offset in (("lora", 0.0), ("qlora", 0.1)):
        nll = 2.5 + offset - 0.2 * np.log2(np.asarray(sizes) / 1000)
        rouge = 20 - 10 * offset + 3 * np.log2(np.asarray(sizes) / 1000)
        fits[method] = {key: scaling_fit(sizes, list(y), [v + rng.normal(0, spread, 200) for v in y],
                                         [0.5, 1.0, 2.5, 5.0], 0.95)
                        for key, y, spread in (("nll", nll, 0.05), ("rouge-l", rouge, 1.0))}
    return fits


def test_the_scaling_figure_is_a_png_with_the_same_bytes_on_every_run(tmp_path):
    fits, metrics = scaling_fits(), {"nll": "answer NLL per token (lower is better)", "rouge-l": "ROUGE-L"}
    plot_scaling(fits, metrics, tmp_path / "a.png", caption="builtin model, fp32 on CPU")
    plot_scaling(fits, metrics, tmp_path / "b.png", caption="builtin model, fp32 on CPU")
    png = (tmp_path / "a.png").read_bytes()
    assert png[:8] == PNG and len(png) > 10_000
    assert png == (tmp_path / "b.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # written atomically, no temp leftovers
    fits["qlora"]["rouge-l"]["per_doubling"]["gain"] = 9.0  # the legend shows the gain per doubling
    plot_scaling(fits, metrics, tmp_path / "c.png", caption="builtin model, fp32 on CPU")
    assert (tmp_path / "c.png").read_bytes() != png


def test_the_judge_adds_a_win_rate_panel_to_the_data_scale_figure(tmp_path):
    from PIL import Image

    judged = table()
    judged["win-rate"] = np.where(judged.run == "base", 50.0, judged["rouge-l"] + 20)
    judged["win-rate_low"], judged["win-rate_high"] = judged["win-rate"] - 8, judged["win-rate"] + 8
    plot_scale_comparison(table(), tmp_path / "plain.png")
    plot_scale_comparison(judged, tmp_path / "judged.png")
    plain, five = (Image.open(tmp_path / f"{n}.png").size for n in ("plain", "judged"))
    assert five[0] > plain[0] * 1.15  # one panel more, as wide as the others
