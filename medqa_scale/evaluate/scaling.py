"""What each step of training data bought, for one method and one metric: the gain per doubling of
the training set (a line in log2 of the sample count), the gain of each step between adjacent
scales with its paired p-value and its price in training hours, and, with enough scales, what a
saturating curve says the next doubling would buy.

Intervals are percentiles over bootstrap resamples that draw the same test questions at every
scale (so steps between scales are paired) and training seeds independently per scale.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from medqa_scale.evaluate.metrics import interval, paired_p_value

log = logging.getLogger(__name__)

LINE_POINTS = 50       # grid of the fitted line, enough for a smooth band
MIN_SATURATING = 4     # the saturating curve has 3 parameters: fewer scales fit it exactly or not at all
SATURATING_FORM = "y = a + s * (1 - 2**(-c*(x - x0))) / (c * ln 2), x = log2(n), x0 = log2(n_min), c >= 0"


def scaling_fit(sizes: list[int], point: list[float], resamples: list[np.ndarray], hours: list[float],
                confidence: float) -> dict:
    """The scaling of one metric of one method with the training-set size, as JSON-able values.

    `sizes` ascending (at least 2), `point` the metric at each scale, `resamples[i]` its (R,)
    bootstrap values at scale i (resample r pairs across scales), `hours` the training time of each
    scale. Gains are in the metric's own units and sign, later scale minus earlier: whether a
    positive gain is better (ROUGE-L) or worse (NLL) is the caller's to know.

    Returns {"scales": [{"n", "value", "low", "high"}],
             "per_doubling": {"gain", "low", "high"}  (OLS slope on x = log2(n)),
             "line": {"x", "fit", "low", "high"}  (the fitted line on a grid of x, its pointwise band),
             "steps": [{"from", "to", "gain", "low", "high", "p", "extra_hours", "gain_per_hour"}],
             "saturating": None with fewer than 4 scales, else {"form", "params", "resamples",
                 "failed_fits", "next_doubling": {"gain", "low", "high", "extrapolation": True}}}.
    `gain_per_hour` is None where the larger scale took no more hours.
    """
    x, y, boot, hours = _checked(sizes, point, resamples, hours, confidence)
    return {"scales": [{"n": int(n), "value": float(v), **interval(boot[:, i], confidence)}
                       for i, (n, v) in enumerate(zip(sizes, y))],
            **_line(x, y, boot, confidence),
            "steps": _steps(sizes, y, boot, hours, confidence),
            "saturating": saturating_fit(x, y, boot, confidence) if len(x) >= MIN_SATURATING else None}


def _checked(sizes, point, resamples, hours, confidence):
    """The inputs as arrays: x = log2(n), y, resamples as (R, scales), hours; ValueError naming what is wrong."""
    k = len(sizes)
    if k < 2:
        raise ValueError(f"need at least 2 scales to measure a gain, got {k}")
    lengths = {"point": len(point), "resamples": len(resamples), "hours": len(hours)}
    if any(n != k for n in lengths.values()):
        raise ValueError(f"need one value per scale ({k} sizes), got {lengths}")
    n = np.asarray(sizes, dtype=float)
    if not np.all(np.isfinite(n)) or n[0] <= 0 or np.any(np.diff(n) <= 0):
        raise ValueError(f"sizes must be positive and strictly increasing, got {list(sizes)}")
    arrays = [np.asarray(r, dtype=float) for r in resamples]
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) != 1 or len(shapes[0]) != 1 or shapes[0][0] == 0:
        raise ValueError(f"resamples must be 1-d arrays of one common, non-zero length (resample r pairs "
                         f"the scales), got shapes {shapes}")
    boot = np.stack(arrays, axis=1)
    y, h = np.asarray(point, dtype=float), np.asarray(hours, dtype=float)
    for name, values in (("point", y), ("resamples", boot), ("hours", h)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} holds non-finite values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return np.log2(n), y, boot, h


def _line(x: np.ndarray, y: np.ndarray, boot: np.ndarray, confidence: float) -> dict:
    xc = x - x.mean()
    # OLS slope of every resample at once: (R, scales) @ (scales,)
    slope, slopes = xc @ y / (xc @ xc), boot @ xc / (xc @ xc)
    grid = np.linspace(x[0], x[-1], LINE_POINTS)
    fit = y.mean() + slope * (grid - x.mean())
    band = boot.mean(axis=1)[:, None] + slopes[:, None] * (grid - x.mean())  # (R, grid)
    low, high = _percentiles(band, confidence)
    return {"per_doubling": {"gain": float(slope), **interval(slopes, confidence)},
            "line": {"x": grid.tolist(), "fit": fit.tolist(), "low": low.tolist(), "high": high.tolist()}}


def _steps(sizes, y: np.ndarray, boot: np.ndarray, hours: np.ndarray, confidence: float) -> list[dict]:
    steps = []
    for i in range(len(y) - 1):
        gain, extra = float(y[i + 1] - y[i]), float(hours[i + 1] - hours[i])
        diffs = boot[:, i + 1] - boot[:, i]  # paired: the same questions in resample r at both scales
        steps.append({"from": int(sizes[i]), "to": int(sizes[i + 1]), "gain": gain, **interval(diffs, confidence),
                      "p": paired_p_value(gain, diffs), "extra_hours": extra,
                      "gain_per_hour": gain / extra if extra > 0 else None})
    return steps


def saturating_curve(x, a: float, s: float, c: float, x0: float = 0.0):
    """The saturating curve of SATURATING_FORM at x: `a` its value at x0, `s` its gain per doubling
    at x0, that gain shrinking by 2**-c per doubling; c = 0 is the line a + s * (x - x0)."""
    u = np.asarray(x, dtype=float) - x0
    if c < 1e-12:
        return a + s * u
    # written with the slope s rather than the height b = s / (c ln 2), so that a nearly straight
    # trend fits with small c instead of running b off to infinity
    return a - s * np.expm1(-c * np.log(2) * u) / (c * np.log(2))


def saturating_fit(x: np.ndarray, y: np.ndarray, boot: np.ndarray, confidence: float) -> dict:
    """SATURATING_FORM fitted with curve_fit to the point estimates `y` at `x` = log2(n) and to each
    row of `boot` (R, scales); the next doubling's gain y(x_max + 1) - y(x_max) and its interval over
    the resamples whose fit converged. Fits that fail are counted in "failed_fits", not dropped
    silently; params and gain are None if the point estimates' own fit fails."""
    x0 = float(x[0])
    start = [float(y[0]), float((y[1] - y[0]) / (x[1] - x[0])), 0.5]
    params = _fit(x, y, x0, start)
    if params is None:
        log.warning("the saturating curve did not fit the point estimates; next-doubling gain left empty")
    gains = [_next_gain(p, x, x0) for p in (_fit(x, row, x0, params or start) for row in boot) if p is not None]
    failed = len(boot) - len(gains)
    if failed:
        log.info("saturating curve: %d of %d resample fits failed", failed, len(boot))
    bounds = interval(np.asarray(gains), confidence) if gains else {"low": None, "high": None}
    return {"form": SATURATING_FORM,
            "params": dict(zip(("a", "s", "c"), params), x0=x0) if params else None,
            "resamples": len(boot), "failed_fits": failed,
            "next_doubling": {"gain": _next_gain(params, x, x0) if params else None, **bounds, "extrapolation": True}}


def _fit(x: np.ndarray, y: np.ndarray, x0: float, start: list[float]) -> list[float] | None:
    """[a, s, c] of the curve through (x, y), or None where curve_fit fails or gives non-finite values."""
    try:
        with warnings.catch_warnings():
            # 3 parameters on as few as 4 points: the covariance may not be estimable; it is not used
            warnings.simplefilter("ignore", OptimizeWarning)
            found, _ = curve_fit(lambda t, a, s, c: saturating_curve(t, a, s, c, x0), x, y, p0=start,
                                 bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, np.inf]), max_nfev=2000)
    except (RuntimeError, ValueError):
        return None
    return [float(v) for v in found] if np.all(np.isfinite(found)) else None


def _next_gain(params: list[float], x: np.ndarray, x0: float) -> float:
    top = float(x[-1])
    return float(np.diff(saturating_curve([top, top + 1], *params, x0=x0))[0])


def _percentiles(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of each column, as `interval` takes it of one array."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return low, high
