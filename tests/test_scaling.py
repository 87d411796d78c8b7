"""Tests of medqa_scale.evaluate.scaling: the gain per doubling and its interval, paired steps between
scales and their price in hours, the saturating curve's next doubling, and bad input.

Run: python -m pytest -q tests/test_scaling.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medqa_scale.evaluate import scaling
from medqa_scale.evaluate.scaling import saturating_curve, scaling_fit

SIZES = [1000, 2000, 5000, 10000]
HOURS = [0.5, 1.0, 2.5, 5.0]
R = 1000


def linear(sizes, intercept=2.0, slope=-0.3):
    return intercept + slope * np.log2(sizes)


def test_an_exact_trend_in_log2_n_gives_its_slope_and_noise_between_resamples_widens_the_interval():
    rng = np.random.default_rng(0)
    y = linear(SIZES)
    # resample r shifts every scale alike (easier or harder questions): the slope is untouched
    shift = rng.normal(0, 0.5, R)
    tight = scaling_fit(SIZES, list(y), [v + shift for v in y], HOURS, 0.95)
    assert tight["per_doubling"]["gain"] == pytest.approx(-0.3)
    assert tight["per_doubling"]["low"] == pytest.approx(-0.3) and tight["per_doubling"]["high"] == pytest.approx(-0.3)
    noisy = scaling_fit(SIZES, list(y), [v + shift + rng.normal(0, 0.1, R) for v in y], HOURS, 0.95)
    low, high = noisy["per_doubling"]["low"], noisy["per_doubling"]["high"]
    assert noisy["per_doubling"]["gain"] == pytest.approx(-0.3)
    assert low < -0.3 < high and high - low > 0.02


def test_the_line_runs_over_the_scales_range_with_a_band_around_it():
    rng = np.random.default_rng(1)
    y = linear(SIZES)
    line = scaling_fit(SIZES, list(y), [v + rng.normal(0, 0.1, R) for v in y], HOURS, 0.95)["line"]
    x, fit, low, high = (np.asarray(line[k]) for k in ("x", "fit", "low", "high"))
    assert x[0] == pytest.approx(np.log2(1000)) and x[-1] == pytest.approx(np.log2(10000))
    np.testing.assert_allclose(fit, linear(2.0 ** x))
    assert np.all(low < fit) and np.all(fit < high)


def test_each_scale_has_its_value_and_percentile_interval_and_the_result_is_json():
    values = [np.arange(R, dtype=float) + i for i in range(len(SIZES))]
    out = scaling_fit(SIZES, [1.0, 2.0, 3.0, 4.0], values, HOURS, 0.9)
    assert [s["n"] for s in out["scales"]] == SIZES and [s["value"] for s in out["scales"]] == [1.0, 2.0, 3.0, 4.0]
    assert out["scales"][0]["low"] == pytest.approx(np.percentile(values[0], 5))
    assert out["scales"][0]["high"] == pytest.approx(np.percentile(values[0], 95))
    assert json.loads(json.dumps(out)) == out


def test_a_consistent_paired_step_is_significant_though_the_scales_intervals_overlap():
    rng = np.random.default_rng(2)
    questions = rng.normal(0, 5, R)  # the spread of each scale: which questions were drawn
    small, large = 30 + questions, 31 + questions + rng.normal(0, 0.2, R)
    out = scaling_fit([1000, 2000], [30.0, 31.0], [small, large], [1.0, 2.0], 0.95)
    a, b = out["scales"]
    assert a["low"] < b["low"] < a["high"] < b["high"]  # the intervals overlap widely
    step = out["steps"][0]
    assert (step["from"], step["to"], step["gain"]) == (1000, 2000, 1.0)
    assert step["p"] == pytest.approx(1 / (R + 1)) and 0 < step["low"] < 1 < step["high"]
    # the same values unpaired (resample r no longer the same questions): no longer significant
    unpaired = scaling_fit([1000, 2000], [30.0, 31.0], [small, rng.permutation(large)], [1.0, 2.0], 0.95)
    assert unpaired["steps"][0]["p"] > 0.5


def test_gain_per_hour_is_the_gain_over_the_extra_hours_and_none_without_extra_hours():
    rng = np.random.default_rng(3)
    y = [20.0, 23.0, 24.5, 25.0]
    steps = scaling_fit(SIZES, y, [v + rng.normal(0, 1, R) for v in y], [0.5, 1.0, 2.5, 2.5], 0.95)["steps"]
    assert [s["extra_hours"] for s in steps] == [0.5, 1.5, 0.0]
    assert [s["gain"] for s in steps] == [3.0, 1.5, 0.5]
    assert steps[0]["gain_per_hour"] == pytest.approx(3.0 / 0.5)
    assert steps[1]["gain_per_hour"] == pytest.approx(1.5 / 1.5)
    assert steps[2]["gain_per_hour"] is None


@pytest.mark.parametrize("sizes", [[1000, 2000, 5000, 10000], [500, 1000, 2000, 4000, 8000, 16000]])
def test_the_saturating_fit_recovers_the_next_doubling_as_an_extrapolation(sizes):
    rng = np.random.default_rng(4)
    x = np.log2(sizes)
    y = saturating_curve(x, 3.0, -0.8, 0.6, x0=x[0])  # an NLL that falls ever more slowly
    truth = float(saturating_curve(x[-1] + 1, 3.0, -0.8, 0.6, x0=x[0]) - saturating_curve(x[-1], 3.0, -0.8, 0.6, x0=x[0]))
    shift = rng.normal(0, 0.05, R)
    out = scaling_fit(sizes, list(y), [v + shift + rng.normal(0, 0.002, R) for v in y], [1.0] * len(sizes), 0.95)
    sat = out["saturating"]
    nxt = sat["next_doubling"]
    assert nxt["extrapolation"] is True
    assert nxt["gain"] == pytest.approx(truth, rel=1e-3)
    assert nxt["low"] < truth < nxt["high"] and nxt["high"] - nxt["low"] < abs(truth) / 2
    assert sat["params"]["c"] == pytest.approx(0.6, rel=1e-3) and sat["failed_fits"] == 0 and sat["resamples"] == R
    # what it predicts is less than the straight line's gain per doubling: the curve saturates
    assert abs(nxt["gain"]) < abs(out["per_doubling"]["gain"])


def test_three_scales_have_no_saturating_fit():
    y = linear(SIZES[:3])
    assert scaling_fit(SIZES[:3], list(y), [np.full(10, v) for v in y], HOURS[:3], 0.95)["saturating"] is None


def test_failed_saturating_fits_are_counted_and_left_out_of_the_interval(monkeypatch):
    calls = {"n": 0}
    real = scaling.curve_fit

    def every_other_resample_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1 and calls["n"] % 2 == 0:  # the first call fits the point estimates
            raise RuntimeError("Optimal parameters not found")
        return real(*args, **kwargs)

    monkeypatch.setattr(scaling, "curve_fit", every_other_resample_fails)
    y = linear(SIZES)
    sat = scaling_fit(SIZES, list(y), [np.full(100, v) for v in y], HOURS, 0.95)["saturating"]
    assert sat["resamples"] == 100 and sat["failed_fits"] == 50
    assert sat["next_doubling"]["gain"] == pytest.approx(-0.3, abs=1e-3)


def good():
    return {"sizes": [1000, 2000, 5000], "point": [1.0, 2.0, 3.0], "resamples": [np.zeros(5)] * 3,
            "hours": [1.0, 2.0, 3.0], "confidence": 0.95}


@pytest.mark.parametrize("change, message", [
    ({"sizes": [1000], "point": [1.0], "resamples": [np.zeros(5)], "hours": [1.0]}, "at least 2 scales"),
    ({"point": [1.0, 2.0]}, "one value per scale"),
    ({"hours": [1.0, 2.0, 3.0, 4.0]}, "one value per scale"),
    ({"resamples": [np.zeros(5)] * 2}, "one value per scale"),
    ({"sizes": [1000, 5000, 2000]}, "strictly increasing"),
    ({"sizes": [1000, 1000, 2000]}, "strictly increasing"),
    ({"sizes": [0, 1000, 2000]}, "positive"),
    ({"resamples": [np.zeros(5), np.zeros(5), np.zeros(4)]}, "common, non-zero length"),
    ({"resamples": [np.zeros((5, 2))] * 3}, "1-d"),
    ({"point": [1.0, float("nan"), 3.0]}, "non-finite"),
    ({"confidence": 95}, "confidence"),
])
def test_bad_input_is_refused_with_its_reason(change, message):
    with pytest.raises(ValueError, match=message):
        scaling_fit(**{**good(), **change})


def test_good_input_is_accepted():
    assert len(scaling_fit(**good())["steps"]) == 2  # the inputs the refusals above start from
