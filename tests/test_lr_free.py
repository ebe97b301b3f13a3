"""The comparison with the learning-rate-free optimizers (chapter 12) at tiny scale: every
method gives a result or a recorded divergence, from the same weights and minibatches; the
units resume and a read-only run never computes; the optimizers are the real packages; the
effective step size is traced once per step."""

import time

import pytest
import torch

from hypergrad import experiments as ex
from hypergrad.experiments import lr_free
from hypergrad.experiments.store import unit_files
from tests.helpers import needs_mnist


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("lr-free")
        start = time.perf_counter()
        res = ex.run("lr-free", scale="tiny", out_dir=out, progress=False)
        yield out, res, time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def test_settings_and_registration():
    assert "lr-free" in ex.EXPERIMENTS and ex.RUNNERS["lr-free"] is ex.run_lr_free
    for scale in ex.SCALES:
        s = ex.settings("lr-free", scale)
        assert set(s["grids"]) == set(lr_free.TUNED)
        assert len({len(g) for g in s["grids"].values()}) == 1   # one budget for all
        assert set(s["defaults"]) == set(lr_free.LR_FREE)
        assert not set(s["select_seeds"]) & set(s["seeds"])
    paper, per_layer = ex.settings("lr-free", "paper"), ex.settings("per-layer", "paper")
    for key in ("n_train", "n_val", "sizes", "batch_size", "T"):
        assert paper[key] == per_layer[key]
    assert all(ex.label(m) != m for m in lr_free.METHODS)


@needs_mnist
def test_every_method_gives_a_result_or_a_divergence(tiny):
    _, res, seconds = tiny
    assert seconds < 60
    assert not res["errors"]
    s = res["settings"]
    assert set(res["report"]) == set(lr_free.METHODS)
    for m, runs in res["report"].items():
        assert len(runs) == len(s["seeds"])
        for r in runs:
            assert r["diverged"] or 0.0 <= r["val_acc"] <= 1.0
            assert r["diverged"] or 0.0 <= r["test_acc"] <= 1.0
        sm = res["summary"][m]
        assert sm["diverged"] == sum(r["diverged"] for r in runs)
        assert sm["cost"] > 0 and sm["uses_validation"] == (m in lr_free.HYPER)
    assert res["summary"]["fixed"]["cost"] == pytest.approx(1.0)
    for m in lr_free.TUNED:
        scores = res["selection_scores"][m]
        assert scores[f"{res['chosen'][m]:g}"] == max(scores.values())
    assert set(res["comparisons"]) == {f"{m} - fixed" for m in lr_free.METHODS
                                       if m != "fixed"}


@needs_mnist
def test_same_weights_and_batches_for_every_method(tiny):
    _, res, _ = tiny
    for i, _seed in enumerate(res["settings"]["seeds"]):
        firsts = {m: runs[i]["first_loss"] for m, runs in res["report"].items()}
        assert len(set(firsts.values())) == 1, firsts


@needs_mnist
def test_one_step_size_per_step(tiny):
    _, res, _ = tiny
    T = res["settings"]["T"]
    for m, runs in res["report"].items():
        for r in runs:
            if not r["diverged"]:
                assert len(r["lr"]) == T, m
                assert all(v >= 0 for v in r["lr"])
            else:
                assert len(r["lr"]) <= T
    for r in res["report"]["fixed"]:
        assert set(r["lr"]) == {res["chosen"]["fixed"]} or r["diverged"]
    for r in res["report"]["hd"]:       # η_0 = 0, then moved by the hypergradient
        assert r["lr"][0] == res["settings"]["lr0"]


@needs_mnist
def test_units_resume_and_readonly_never_computes(tiny, tmp_path):
    out, res, _ = tiny
    assert res["units"]["computed"] == len(unit_files(out)) > 0
    again = ex.run_lr_free(res["settings"], out_dir=out, progress=False)
    assert again["units"]["computed"] == 0
    assert again["units"]["loaded"] > 0
    ro = ex.run_lr_free(res["settings"], out_dir=out, progress=False, readonly=True)
    assert ro["units"]["computed"] == 0
    assert ro["summary"]["fixed"]["val_acc"] == res["summary"]["fixed"]["val_acc"]
    with pytest.raises(ex.MissingUnit):
        ex.run_lr_free(res["settings"], out_dir=tmp_path, progress=False, readonly=True)
    assert not list(tmp_path.rglob("*.json*"))


@pytest.mark.parametrize("method, module", [
    ("prodigy", "prodigyopt"), ("sf-sgd", "schedulefree"), ("sf-adamw", "schedulefree"),
    ("dadapt-sgd", "dadaptation"), ("dog", "dog")])
def test_the_real_packages(method, module):
    s = ex.settings("lr-free", "tiny")
    net = torch.nn.Linear(3, 2)
    opt = lr_free.make_optimizer(method, net, None, s)
    assert type(opt).__module__.startswith(module)
    assert isinstance(opt, torch.optim.Optimizer)
    assert lr_free.package_errors()[method] is None


@needs_mnist
def test_the_chapter_helpers(tiny):
    from hypergrad.viz import lr_free as lv

    _, res, _ = tiny
    table = lv.summary_markdown(res)
    assert table.count("\n") == len(lr_free.METHODS) + 1
    assert lv.diverged_text(res) and lv.chosen_text(res)
    for m in lr_free.LR_FREE:
        assert lv.versions()[lr_free.PACKAGES[m][0]] != "not installed"
    for fig in (lv.step_size_figure(res), lv.accuracy_figure(res)):
        assert fig.get_figwidth() <= 7.0
        texts = [t for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels())]
        assert all(t.get_fontsize() >= 9 for t in texts)


@needs_mnist
def test_the_committed_paper_scale_units_are_complete_and_current():
    """Chapter 12 reads these read-only: a unit of other settings would show a placeholder.
    Every tuned method runs its grid on the selection seeds and its chosen value on the
    reported ones; every learning-rate-free method runs its defaults on the reported seeds."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "results" / "lr-free" / "paper"
    s = ex.settings("lr-free", "paper")
    res = ex.run_lr_free(s, out_dir=folder, progress=False, readonly=True)
    assert res["units"]["computed"] == 0
    assert not any(res["errors"].values())     # every package imported
    assert set(res["report"]) == set(lr_free.METHODS)
    assert all(len(runs) == len(s["seeds"]) for runs in res["report"].values())


def test_the_table_takes_its_cost_from_the_interleaved_benchmark(tiny):
    from hypergrad.viz import lr_free as lv

    _, res, _ = tiny
    cost = {m: 2.0 for m in lr_free.METHODS if m != "dog"}   # DoG: not timed
    rows = lv.summary_markdown(res, cost).splitlines()[2:]
    assert len(rows) == len(lr_free.METHODS)
    dog = [r for r in rows if r.startswith("| DoG")]
    assert len(dog) == 1 and dog[0].endswith("| — |")
    assert all(r.endswith("| 2.0 × |") for r in rows if r not in dog)
    # without the benchmark, the runs' own step times
    assert lv.summary_markdown(res) != lv.summary_markdown(res, cost)
