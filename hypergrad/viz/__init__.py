"""The book's layer: chapter setup, one style, plots, experiment figures and widgets.

Nothing in the library core imports this package (``lint-imports`` checks it): it is what the
chapters use to draw and explore what the core computes.

* :mod:`hypergrad.viz.setup` — :func:`chapter_setup`, the first cell of every chapter;
* :mod:`hypergrad.viz.style` — display names and colours of the methods, defined once;
* :mod:`hypergrad.viz.plots` — plotting functions of Part I (each takes an ``ax``);
* :mod:`hypergrad.viz.figures` — the figures of Part II's experiments;
* :mod:`hypergrad.viz.widgets` — the ipywidgets explorers.
"""

from hypergrad.viz.setup import FIGURE_DPI, SCALES, Setup, chapter_setup

__all__ = ["chapter_setup", "Setup", "SCALES", "FIGURE_DPI"]
