"""The per-layer experiment (chapter 11): one learning rate per layer against one rate and a
fixed rate, at tiny scale: its selection protocol, its units, its command line."""

import json

import pytest
import torch

from hypergrad import experiments as ex
from hypergrad.experiments import per_layer
from hypergrad.experiments.store import unit_files
from tests.helpers import needs_mnist


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("per-layer")
        yield out, ex.run("per-layer", scale="tiny", out_dir=out, progress=False)
    finally:
        torch.set_num_threads(threads)


@needs_mnist
def test_selection_on_other_seeds_and_the_report(tiny):
    _, res = tiny
    s = res["settings"]
    assert not set(s["select_seeds"]) & set(s["seeds"])
    for method, grid in per_layer.METHODS.items():
        scores = res["selection_scores"][method]
        assert set(scores) == {f"{v:g}" for v in s[grid]}
        assert scores[f"{res['chosen'][method]:g}"] == max(scores.values())
        assert len(res["report"][method]) == len(s["seeds"])
        # the report's runs are the chosen value's on the reported seeds, and no other
        # value was run on a reported seed
        runs = res["runs"][method]
        for value, by_seed in runs.items():
            if value != f"{res['chosen'][method]:g}":
                assert set(by_seed) == set(s["select_seeds"])
    for name, c in res["comparisons"].items():
        a, b = name.split(" - ")
        diffs = [(ra["val_acc"] or 0.0) - (rb["val_acc"] or 0.0)
                 for ra, rb in zip(res["report"][a], res["report"][b], strict=True)]
        assert c["val_acc"]["mean"] == pytest.approx(sum(diffs) / len(diffs))


@needs_mnist
def test_one_trace_per_layer_and_the_rates_part(tiny):
    _, res = tiny
    layers = len(res["settings"]["sizes"]) - 1
    T = res["settings"]["T"]
    for r in res["report"]["marthe-per-layer"]:
        assert len(r["lr"]) == layers and all(len(g) == T for g in r["lr"])
        assert r["lr"][0][0] == pytest.approx(res["settings"]["lr0"], rel=1e-6)
        assert r["lr"][0] != r["lr"][-1]
    for r in res["report"]["marthe-one-eta"]:
        assert len(r["lr"]) == 1
    for r in res["report"]["fixed"]:
        assert set(r["lr"][0]) == {res["chosen"]["fixed"]}


@needs_mnist
def test_units_resume_without_recomputing(tiny):
    out, res = tiny
    files = unit_files(out)
    assert files and all(n.startswith("per_layer_") for n in files)
    again = ex.run("per-layer", scale="tiny", out_dir=out, progress=False)
    assert again["units"] == {"computed": 0, "loaded": len(files)}
    assert json.dumps(again["report"], sort_keys=True) == json.dumps(res["report"],
                                                                      sort_keys=True)


def test_train_run_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        per_layer.train_run(None, "adam-per-layer", 0.1, 0)


def test_layer_groups_are_the_linear_layers():
    from hypergrad.models import MLP

    net = MLP((6, 5, 4, 3))
    groups = per_layer.layer_groups(net)
    assert len(groups) == 3
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


@needs_mnist
def test_command_line(tmp_path):
    from hypergrad.experiments.cli import main

    assert main(["per-layer", "--scale", "tiny", "--out", str(tmp_path), "--no-progress"]) == 0
    saved = json.loads((ex.result_dir(tmp_path, "per-layer", "tiny") / "results.json")
                       .read_text())
    assert set(saved["report"]) == set(per_layer.METHODS)


@needs_mnist
def test_a_read_only_run_reads_and_never_computes(tiny, tmp_path):
    out, res = tiny
    s = res["settings"]
    again = per_layer.run_per_layer(s, out_dir=out, readonly=True)
    assert again["units"]["computed"] == 0 and again["chosen"] == res["chosen"]
    with pytest.raises(ex.MissingUnit):
        per_layer.run_per_layer(s, out_dir=tmp_path, readonly=True)


def test_chosen_text_says_when_a_value_is_at_the_edge_of_its_grid():
    from hypergrad.viz.per_layer import chosen_text

    res = {"settings": {"fixed_lrs": [0.1, 0.3, 1.0], "betas": [1e-4, 1e-3, 1e-2]},
           "chosen": {"fixed": 0.3, "marthe-one-eta": 1e-4, "marthe-per-layer": 1e-3}}
    text = chosen_text(res)
    assert "η = 0.3," in text and "β = 0.0001 (the edge of its grid)" in text
    assert "β = 0.001 with" in text


@needs_mnist
def test_the_committed_paper_scale_units_are_complete_and_current():
    """Chapter 11 reads these read-only: a unit of other settings would show a placeholder."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "results" / "per-layer" / "paper"
    s = ex.settings("per-layer", "paper")
    res = per_layer.run_per_layer(s, out_dir=folder, readonly=True)
    n = len(s["select_seeds"]) * sum(len(s[g]) for g in per_layer.METHODS.values())
    n += len(s["seeds"]) * len(per_layer.METHODS)
    assert res["units"] == {"computed": 0, "loaded": n}
