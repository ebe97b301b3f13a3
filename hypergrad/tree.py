"""Trees of tensors: (nested) dicts whose leaves are tensors, such as an optimizer state
``w = {"params": θ, "momentum": v}``. The few maps the algorithms need, and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["Tree", "tree_map", "tree_leaves", "tree_dot", "tree_zeros_like", "tree_scale",
           "tree_all_finite", "tree_detach"]

Tree = Any


def tree_map(fn: Callable, *trees: Tree) -> Tree:
    """Map ``fn`` over the leaves of dicts (nested) of tensors."""
    first = trees[0]
    if isinstance(first, Mapping):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    return fn(*trees)


def tree_leaves(tree: Tree) -> list[torch.Tensor]:
    """The tensors of a (nested) dict, in insertion order."""
    if isinstance(tree, Mapping):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    return [tree]


def tree_dot(a: Tree, b: Tree) -> torch.Tensor:
    """``Σ ⟨a_i, b_i⟩`` over matching leaves (a 0-dim tensor)."""
    return sum((x * y).sum() for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True))


def tree_zeros_like(tree: Tree) -> Tree:
    return tree_map(torch.zeros_like, tree)


def tree_scale(tree: Tree, c: float | torch.Tensor) -> Tree:
    return tree_map(lambda x: c * x, tree)


def tree_detach(tree: Tree) -> Tree:
    """Detached leaves; tuples, lists and ``None`` are walked through as well."""
    if isinstance(tree, Mapping):
        return {k: tree_detach(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_detach(v) for v in tree)
    return tree.detach() if isinstance(tree, torch.Tensor) else tree


def tree_all_finite(tree: Tree) -> bool:
    """True when every leaf is finite (one reduction and one sync)."""
    leaves = tree_leaves(tree)
    return bool(torch.stack([x.sum() for x in leaves]).isfinite().all()) if leaves else True
