"""Part I's chapters (1, 2, 3 and the user's guide, 8): the style of their code cells, and
the plotting function their cells moved into the book's layer (``plots.plot_constant_scan``).

The style rule: a visible code cell (no ``hide-input``, ``remove-input`` or ``remove-cell``
tag) shows its lesson in at most 40 lines, and no line of a code cell is longer than 80
characters.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hypergrad.viz import plots  # noqa: E402

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = ["01_schedules.md", "02_hypergradient.md", "03_online.md",
            "08_using_hypergrad.md"]
HIDDEN = ("hide-input", "remove-input", "remove-cell")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def code_cells(text: str) -> list[tuple[int, list[str], bool]]:
    """``(line of the opening fence, code lines, hidden)`` for every code cell."""
    lines = text.splitlines()
    cells, i = [], 0
    while i < len(lines):
        if lines[i].startswith("```{code-cell}"):
            j, body = i + 1, []
            while not lines[j].startswith("```"):
                body.append(lines[j])
                j += 1
            options = [b for b in body if b.startswith(":")]
            hidden = any(tag in b for b in options for tag in HIDDEN)
            cells.append((i + 1, [b for b in body if not b.startswith(":")], hidden))
            i = j
        i += 1
    return cells


def test_code_cells_parser_sees_tags_and_lengths():
    text = ("```{code-cell} ipython3\n:tags: [hide-input]\n\nx = 1\n```\n\n"
            "```{code-cell} ipython3\n" + "y = 2\n" * 3 + "```\n")
    cells = code_cells(text)
    assert [(n, len(code), hidden) for n, code, hidden in cells] == [(1, 2, True),
                                                                   (7, 3, False)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_visible_cells_are_short_and_lines_narrow(chapter):
    cells = code_cells((BOOK / chapter).read_text(encoding="utf-8"))
    assert cells
    long_cells = [(n, len(code)) for n, code, hidden in cells
                  if not hidden and len(code) > 40]
    wide = [(n, line) for n, code, hidden in cells if not hidden
            for line in code if len(line) > 80]
    assert not long_cells, f"{chapter}: visible cells over 40 lines: {long_cells}"
    assert not wide, f"{chapter}: code lines over 80 characters: {wide}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_a_code_check(chapter):
    """Each solution of these chapters ends its derivation with a computed check."""
    text = (BOOK / chapter).read_text(encoding="utf-8")
    solutions = re.findall(r":::\{solution-start\} ([\w-]+)\n(.*?):::\{solution-end\}",
                           text, re.DOTALL)
    assert solutions
    for label, body in solutions:
        assert "```{code-cell}" in body, (chapter, label)


def test_new_derivation_exercises_are_there():
    ch2 = (BOOK / "02_hypergradient.md").read_text(encoding="utf-8")
    ch3 = (BOOK / "03_online.md").read_text(encoding="utf-8")
    assert ":label: ch2-ex-adam-jacobian" in ch2
    assert ":::{solution-start} ch2-ex-adam-jacobian" in ch2
    assert ":label: ch3-ex-rtho-constant" in ch3
    assert ":::{solution-start} ch3-ex-rtho-constant" in ch3


def test_plot_constant_scan_draws_the_finite_values_and_the_best():
    cs = torch.logspace(-2, 1, 4, dtype=torch.float64)
    values = [0.5, 0.2, 0.3, math.nan]            # the largest constant diverged
    ax = plots.plot_constant_scan(None, cs, values, best=0.1)
    data, marker = ax.lines                       # the curve, then the vertical line
    assert np.allclose(data.get_xdata(), [0.01, 0.1, 1.0])
    assert np.allclose(data.get_ydata(), [0.5, 0.2, 0.3])
    assert data.get_marker() == "o"
    assert np.allclose(marker.get_xdata(), [0.1, 0.1]) and marker.get_linestyle() == ":"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "c" in ax.get_xlabel() and ax.get_ylabel() == r"$f_T(c\,\mathbf{1})$"
    assert ax.get_legend() is None


def test_plot_constant_scan_without_best_and_on_given_axes():
    fig, ax = plt.subplots()
    out = plots.plot_constant_scan(ax, [1.0, 2.0], np.array([3.0, np.inf]),
                                   ylabel="f", title="scan")
    assert out is ax and len(ax.lines) == 1
    assert np.allclose(ax.lines[0].get_ydata(), [3.0])
    assert ax.get_ylabel() == "f" and ax.get_title() == "scan"


def test_plot_constant_scan_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 values for 3 constants"):
        plots.plot_constant_scan(None, [1.0, 2.0, 3.0], [1.0, 2.0])
