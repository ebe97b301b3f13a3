"""Chapters 7 and 8 render Part II's claims as records: the keys they look up exist, and
chapter 8's advice is computed from the records whatever the authors' protocol has committed.

The advice section of chapter 8 is executed here (its code cells only, ``glue`` collected)
with the protocol's committed units cut down to no seed, one seed and all of them: the
sentences must be chosen from the verdicts at every stage of the sweep, never fail on a
missing seed, and never state a comparison the records do not support.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hypergrad.experiments as ex
from hypergrad.experiments import protocol as protocol_mod

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CH7 = BOOK / "07_sensitivity.md"
CH8 = BOOK / "08_using_hypergrad.md"
SECTION = (
    "### What the measurements of Section 5 recommend",
    "### HD, RTHO and MARTHE on your model",
)


def _sec5():
    res = ex.committed("mnist-schedules", root=ROOT / "results")["result"]
    if res is None:
        pytest.skip("no committed mnist-schedules result")
    return res


def _cells(text: str) -> list[str]:
    """The code cells of a MyST fragment, without their options."""
    out = []
    for part in text.split("```{code-cell} ipython3\n")[1:]:
        body = part.split("\n```\n")[0]
        out.append("\n".join(ln for ln in body.split("\n") if not ln.startswith(":tags:")))
    return out


def test_ch7_names_every_sensitivity_record() -> None:
    text = CH7.read_text(encoding="utf-8")
    named = set(re.findall(r'"(grid-[a-z]+)":', text))
    res = ex.committed("sensitivity", root=ROOT / "results")["result"]
    if res is None:
        pytest.skip("no committed sensitivity result")
    keys = {r.key for r in ex.sensitivity_records(ex.sensitivity_claims(res))}
    assert keys and keys <= named, keys - named


def test_ch8_looks_up_existing_records() -> None:
    text = CH8.read_text(encoding="utf-8")
    used = {
        k
        for k in re.findall(r'"([a-z-]+(?:\[[a-z0-9.-]+\])?)"', text)
        if k.startswith(("vs-fixed[", "marthe-improves[", "auto-mu-helps"))
    }
    used |= {f"vs-fixed[{m}]" for m in re.findall(r'\("(marthe[a-z0-9.-]*)", "', text)}
    sec5 = _sec5()
    keys = {r.key for r in ex.section5_records(sec5, ex.mnist_claims(sec5), None)}
    assert used and used <= keys, used - keys


def _cut(prot: dict, keep: int) -> dict:
    """``prot`` with the runs of its first ``keep`` seeds only."""
    seeds = sorted({int(n.rpartition("_seed")[2]) for n in prot["runs"]})[:keep]
    runs = {n: r for n, r in prot["runs"].items() if int(n.rpartition("_seed")[2]) in seeds}
    return {**prot, "runs": runs, "done": len(runs)}


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0, 1, None], ids=["no-seed", "one-seed", "all"])
def test_ch8_advice_follows_the_records(keep, monkeypatch) -> None:
    _sec5()
    from hypergrad import viz

    prot = ex.committed_protocol(root=ROOT / "results")
    if keep is not None:
        prot = _cut(prot, keep)
    monkeypatch.setattr(ex, "committed_protocol", lambda root=None, **kw: prot)
    monkeypatch.setattr(protocol_mod, "committed_protocol", lambda root=None, **kw: prot)
    text = CH8.read_text(encoding="utf-8")
    section = text[text.index(SECTION[0]) : text.index(SECTION[1])]
    glued: dict = {}
    ns = {
        "glue": lambda k, v, display=False: glued.__setitem__(k, getattr(v, "data", v)),
        "viz": viz,
    }
    monkeypatch.chdir(BOOK)
    for cell in _cells(section):
        exec(cell, ns)  # noqa: S102 - the chapter's own cells
    for role in set(re.findall(r"\{glue:text\}`(ch8-[a-z0-9-]+)", section)):
        if role not in ("ch8-T", "ch8-seeds", "ch8-lr0"):
            assert role in glued, role
    rec = ns["rec"]
    # the default is the one the verdicts choose
    if ns["auth"] == ex.HOLDS:
        assert "authors" in glued["ch8-default"]
    elif ns["book"] != ex.HOLDS:
        assert "both adaptive rules" not in glued["ch8-default"]
        assert glued["ch8-beta-status"].startswith("not")
    authors = rec["marthe-improves[marthe-authors]"]
    if keep in (0, 1):
        assert authors.stats is None and "nothing is read yet" in glued["ch8-authors"]
        assert "fewer than two complete seeds" in glued["ch8-prot-text"]
    # each comparison is said as its verdict says, with the record's numbers
    phrase = {
        ex.HOLDS: " beat ",
        ex.FAILS: " did worse than ",
        ex.UNDECIDED: " cannot be told apart ",
    }
    for key, role, who in (
        ("marthe-improves[marthe]", "ch8-both", "Adapting β as well"),
        ("vs-fixed[marthe-auto-mu]", "ch8-vs-fixed", "Adaptive μ"),
        ("auto-mu-helps", "ch8-mu", "Adaptive μ"),
    ):
        said = glued[role]
        start = said.index(who)
        assert phrase[rec[key].verdict] in said[start : start + len(who) + 80], (key, said)
        assert rec[key].value in said
