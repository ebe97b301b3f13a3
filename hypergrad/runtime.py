"""Device and seeds: the two choices every script and chapter makes first.

:func:`pick_device` takes ``cuda`` when it is available; :func:`seed_everything` seeds Python's,
NumPy's and PyTorch's generators. (The chapters' setup cell, which also reads the scale switch
and sets up figures, is :func:`hypergrad.viz.setup.chapter_setup`.)
"""

from __future__ import annotations

import random

import torch

__all__ = ["pick_device", "seed_everything"]

def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available, else the CPU (or the device asked for)."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
