"""One number format for every label of a colour scale (grid colour bars, prediction overlays;
the review page's static/app.js `scaleFormat` follows the same rule).

A bar labelled 0.1, 0.15 and 2e-05 side by side reads badly and hides the scale's precision.
Here all labels of one scale share one format, chosen from the scale's span: fixed-point with
the decimals that give the span three significant digits, or, for very large or very small
magnitudes, scientific notation with two decimals.
"""

from __future__ import annotations

import math
from collections.abc import Callable

MAX_DECIMALS = 6


def scale_decimals(lo: float, hi: float) -> int | None:
    """Decimals of the fixed-point format for a scale [lo, hi]; None: use scientific."""
    big = max(abs(lo), abs(hi))
    span = abs(hi - lo) or big or 1.0
    if big >= 1e5 or (0 < big < 1e-3) or span < 10.0**-MAX_DECIMALS:
        return None
    return max(0, min(MAX_DECIMALS, 2 - math.floor(math.log10(span))))


def scale_format(lo: float, hi: float) -> Callable[[float], str]:
    """A formatter for every label of the scale [lo, hi], all in one format."""
    decimals = scale_decimals(lo, hi)

    def fmt(value: float) -> str:
        if not math.isfinite(value):
            return str(value)
        if decimals is None:
            return f"{value:.2e}"
        text = f"{value:.{decimals}f}"
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text

    return fmt
