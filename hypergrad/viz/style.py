"""The book's one style: display names and colours of the methods, the same in every figure.

The names are defined beside the experiments' settings (``hypergrad.experiments.settings.LABELS``,
which also the experiments' verdict sentences use); the colours are defined here.
"""

from __future__ import annotations

from hypergrad.experiments.settings import LABELS, label

__all__ = ["LABELS", "label", "COLORS", "color"]

#: One colour per method, the same in every figure of Part II.
COLORS = {
    "lrs-opt": "black", "fixed": "0.45", "hd": "tab:orange", "rtho": "tab:red",
    "marthe-auto-mu": "tab:blue", "marthe": "tab:green", "exponential": "tab:purple",
    "staircase": "tab:brown", "sgdr": "tab:pink", "marthe-one-eta": "tab:green",
    "marthe-per-layer": "tab:blue",
}
_EXTRA = ["tab:olive", "tab:cyan", "darkgoldenrod", "slateblue", "teal"]


def color(method: str) -> str:
    """The colour of ``method`` in every figure (a stable pick for a method not listed)."""
    if method in COLORS:
        return COLORS[method]
    return _EXTRA[sum(map(ord, method)) % len(_EXTRA)]
