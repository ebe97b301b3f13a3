"""The book's choices measured the other way (the protocol study's ``eta0``, ``valbatch`` and
``authors-noclip`` families).

For a choice of the book and a method, the same method is run with the choice flipped, on the
seeds that family covers, and three paired comparisons are read (each method's hyperparameter
cross-fitted on its own grid, :func:`~hypergrad.experiments.claims.versus`):

* ``effect``: the method with the choice flipped minus the method as the book runs it;
* ``book``: the constant η minus the method as the book runs it;
* ``flipped``: the constant η minus the method with the choice flipped.

A verdict against the constant η that rests on the choice is the same both ways when ``book``
and ``flipped`` agree. Nothing here trains: the rows are read from stored runs.
"""

from __future__ import annotations

from hypergrad.experiments.claims import accuracy_table, versus

__all__ = ["ALTERNATIVES", "CHOICE_METHODS", "choice_effects"]

#: choice of the book -> (the table's prefix of the runs with it flipped, the flip in words)
ALTERNATIVES = {
    "lr0": ("eta0.1", "η₀ = 0.1 (the constant η's rate) instead of 0"),
    "full-val": ("valbatch", "E and its gradient on a fresh 100-image validation minibatch at "
                             "every step (as the authors' release) instead of all 700 images"),
    "clip": ("marthe-authors-noclip", "Δₜ not clipped instead of clipped at ±100 (the "
                                      "authors' protocol)"),
}

#: the methods whose runs are repeated with ``lr0`` and ``full-val`` flipped
CHOICE_METHODS = ("hd", "rtho", "marthe-mu0.5", "marthe-mu0.9", "marthe-mu0.99",
                  "marthe-auto-mu")


def _whole(table: dict, method: str, seeds: list[str]) -> list[str]:
    """The seeds of ``seeds`` on which ``method`` has a run at every value of its grid."""
    by_hyper = table.get(method, {})
    return [k for k in seeds if by_hyper and all(k in by for by in by_hyper.values())]


def choice_effects(sec5: dict, protocol: dict | None, metric: str = "val_acc") -> list[dict]:
    """One row per (choice, method) that has runs with the choice flipped on at least two
    seeds: ``{"choice", "method", "flipped_as", "seeds", "effect", "book", "flipped",
    "same"}``, the three comparisons of the module's docstring (:func:`.paired` results with
    ``chosen``) on the seeds where the flipped method, the book's method and the constant η all
    have every run; ``same`` is whether ``book`` and ``flipped`` give the same verdict."""
    table = accuracy_table(sec5, protocol, metric)
    fixed_seeds = sorted(k for k, v in table["fixed"][None].items() if v is not None)
    rows = []
    pairs = [(c, m, f"{ALTERNATIVES[c][0]}:{m}") for c in ("lr0", "full-val")
             for m in CHOICE_METHODS]
    pairs.append(("clip", "marthe-authors", ALTERNATIVES["clip"][0]))
    for choice, method, alt in pairs:
        seeds = _whole(table, alt, _whole(table, method, fixed_seeds))
        if len(seeds) < 2:
            continue
        seeds = sorted(seeds, key=int)
        book = versus(table, "fixed", method, seeds)
        flipped = versus(table, "fixed", alt, seeds)
        rows.append({"choice": choice, "method": method, "flipped_as": alt, "seeds": seeds,
                     "effect": versus(table, alt, method, seeds), "book": book,
                     "flipped": flipped, "same": book["verdict"] == flipped["verdict"]})
    return rows
