"""The book's layer: chapter setup, one style, plots, experiment figures and widgets.

Nothing in the library core imports this package (``lint-imports`` checks it): it is what the
chapters use to draw and explore what the core computes.

* :mod:`hypergrad.viz.setup` — :func:`.chapter_setup`, the first cell of every chapter;
* :mod:`hypergrad.viz.style` — display names and colours of the methods, defined once;
* :mod:`hypergrad.viz.plots` — plotting functions of Part I (each takes an ``ax``);
* :mod:`hypergrad.viz.figures` — the figures of Part II's experiments;
* :mod:`hypergrad.viz.widgets` — the ipywidgets explorers;
* :mod:`hypergrad.viz.verdicts` — the claims of Part II as a table and as prose;
* :mod:`hypergrad.viz.prose` — chapter 5's numbers into sentences and table rows;
* :mod:`hypergrad.viz.reference` — the LRS-OPT reference drawn and said;
* :mod:`hypergrad.viz.per_layer` — one learning rate per layer drawn and said.
"""

from hypergrad.viz import guide, lr_free, per_layer, prose, reference  # noqa: F401  (submodules the chapters use)
from hypergrad.viz.setup import FIGURE_DPI, SCALES, Setup, chapter_setup
from hypergrad.viz.verdicts import (
    NAMES,
    choice_effects_markdown,
    choices_markdown,
    claims_markdown,
    forest_figure,
    metrics_markdown,
    other_way_markdown,
    pm,
    protocol_text,
    verdict_sentence,
)

__all__ = ["chapter_setup", "Setup", "SCALES", "FIGURE_DPI", "claims_markdown",
           "choices_markdown", "protocol_text", "verdict_sentence", "pm", "NAMES",
           "forest_figure", "metrics_markdown", "choice_effects_markdown",
           "other_way_markdown"]
__all__ += ["prose", "per_layer"]
