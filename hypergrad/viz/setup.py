"""The chapters' setup cell: device, seed, scale, threads and inline figures.

Chapters call :func:`chapter_setup` in their first code cell. The scale is ``"quick"``
by default (every chapter executes in about two minutes on two CPU cores) and
``"paper"`` when the environment variable ``HYPERGRAD_SCALE=paper`` is set or the
argument says so (the paper's settings, meant for a GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from hypergrad.runtime import pick_device, seed_everything

SCALES = ("quick", "paper")
FIGURE_DPI = 150


@dataclass(frozen=True)
class Setup:
    """What a chapter runs on: ``device``, ``scale`` (``"quick"`` or ``"paper"``) and ``seed``."""

    device: torch.device
    scale: str
    seed: int

    @property
    def paper(self) -> bool:
        """True at paper scale."""
        return self.scale == "paper"


def chapter_setup(seed: int = 0, scale: str | None = None, device: str | None = None,
                  threads: int | None = None, verbose: bool = True) -> Setup:
    """Pick the device once, seed every generator and read the scale switch.

    ``scale`` defaults to ``$HYPERGRAD_SCALE`` or ``"quick"``. ``threads`` (default
    ``$HYPERGRAD_THREADS``) sets PyTorch's intra-op threads; at quick scale on a CPU the
    default is one thread: the chapters' small problems run no faster on more, and on a
    shared machine several threads per process slow everything down many times over.
    """
    scale = scale or os.environ.get("HYPERGRAD_SCALE", "quick")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    setup = Setup(pick_device(device), scale, seed)
    threads = threads or int(os.environ.get("HYPERGRAD_THREADS", "0")) or (
        1 if setup.device.type == "cpu" and scale == "quick" else None)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    _inline_figures()
    if verbose:                      # what a reader needs: versions, device, scale, seed
        print(f"hypergrad {_version()} · torch {torch.__version__} · {setup.device} · "
              f"{setup.scale} scale · seed {seed}")
    return setup


def _inline_figures() -> None:
    """In a Jupyter kernel, draw matplotlib figures inline (as images in the page), even when
    ``MPLBACKEND`` names a non-interactive backend such as Agg, at ``FIGURE_DPI`` dots per
    inch."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and "IPKernelApp" in ip.config:
        ip.run_line_magic("matplotlib", "inline")
        import matplotlib

        # Sharp figures in the pages: the inline backend renders PNGs at the figure's dpi.
        matplotlib.rcParams["figure.dpi"] = FIGURE_DPI


def _version() -> str:
    from hypergrad import __version__

    return __version__
