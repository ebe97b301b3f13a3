"""The comparison with the learning-rate-free optimizers (chapter 12) at tiny scale: every
method gives a result or a recorded divergence, from the same weights and minibatches; the
units resume and a read-only run never computes; the optimizers are the real packages; the
effective step size is traced once per step."""

import time

import pytest
import torch

from hypergrad import experiments as ex
from hypergrad import models
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
    assert ex.RUNNERS["lr-free-cnn"] is ex.run_lr_free
    for scale in ex.SCALES:
        s = ex.settings("lr-free-cnn", scale)
        assert s["model"] == "cnn" and s["momentum"] == 0.9 and "sizes" not in s
        assert s["unit_prefix"] != ex.settings("lr-free", scale)["unit_prefix"]
        assert len({len(g) for g in s["grids"].values()}) == 1
        assert not set(s["select_seeds"]) & set(s["seeds"])
    cnn = ex.settings("lr-free-cnn", "paper")
    for key in ("n_train", "n_val", "batch_size", "T", "seeds", "select_seeds", "defaults"):
        assert cnn[key] == paper[key]


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

    for experiment in ("lr-free", "lr-free-cnn"):
        folder = Path(__file__).resolve().parent.parent / "results" / experiment / "paper"
        s = ex.settings(experiment, "paper")
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


@needs_mnist
def test_the_cnn_task_steps_with_momentum_and_checkpoints():
    """On the CNN task the tuned baselines and the hypergradient methods carry momentum 0.9;
    the accuracy curve has one entry every ``checkpoint_every`` steps and ends at ``T``, with
    the final validation accuracy as its last validation entry."""
    s = dict(ex.settings("lr-free-cnn", "tiny"), T=5)
    task = lr_free.LrFreeTask(s)
    net = task.module(0)
    assert isinstance(net, models.SmallCNN)
    for m in ("fixed", "marthe-auto-mu"):
        opt = lr_free.make_optimizer(m, task.module(0), s["grids"][m][0], s)
        assert opt.param_groups[0]["momentum"] == 0.9
    r = lr_free.train_run(task, "fixed", s["grids"]["fixed"][0], 0)
    assert r["curve"]["step"] == [2, 4, 5]
    assert r["curve"]["val_acc"][-1] == r["val_acc"]
    assert all(0 <= a <= 1 for a in r["curve"]["test_acc"])
    # the MLP task's network of a seed is Part II's w_0 for that seed
    mlp = lr_free.LrFreeTask(ex.settings("lr-free", "tiny"))
    w0 = ex.MnistTask(ex.settings("lr-free", "tiny"), "cpu").init_params(3)
    for n, p in mlp.module(3).named_parameters():
        assert torch.equal(p.detach(), w0[n])


@needs_mnist
@pytest.mark.parametrize("method, expected", [
    ("fixed", (1, 0, 1, 0)), ("sf-sgd", (1, 0, 1, 0)), ("prodigy", (1, 0, 1, 0)),
    ("hd", (1, 1, 2, 0)), ("marthe-mu0.9", (1, 1, 2, 1)), ("rtho", (1, 1, 2, 1))])
def test_passes_per_step_are_counted(method, expected):
    """A plain step: one forward and one backward pass; HD adds the gradient of E on a
    validation minibatch; RTHO and MARTHE add one Hessian-vector product as well."""
    s = ex.settings("lr-free", "tiny")
    task = lr_free.LrFreeTask(s)
    value = s["grids"][method][0] if method in lr_free.TUNED else None
    got = lr_free.count_passes(task, method, value, steps=3)
    assert tuple(got.values()) == expected, got


@needs_mnist
def test_adaptive_mu_skips_the_hvp_where_mu_is_zero():
    """μ_0 = 0: the first step needs no Hessian-vector product, the next ones one each."""
    s = ex.settings("lr-free", "tiny")
    task = lr_free.LrFreeTask(s)
    one = lr_free.count_passes(task, "marthe-auto-mu", s["grids"]["marthe-auto-mu"][0], steps=1)
    three = lr_free.count_passes(task, "marthe-auto-mu", s["grids"]["marthe-auto-mu"][0],
                                 steps=3)
    assert one["Hessian-vector products"] == 0 and one["gradients"] == 2
    assert three["Hessian-vector products"] == pytest.approx(2 / 3)


def test_equal_time_reads_each_curve_within_the_budget():
    """A method costing c SGD steps is read at the last checkpoint within T / c steps; a run
    that diverged before it counts 0; a method without a cost is left out."""
    def run(accs, diverged_at=None):
        steps = [10, 20, 30, 40][:len(accs)]
        return {"curve": {"step": steps, "test_acc": accs, "val_acc": accs},
                "diverged": diverged_at is not None, "diverged_at": diverged_at}
    res = {"settings": {"T": 40, "checkpoint_every": 10},
           "report": {"fixed": [run([.1, .2, .3, .4]), run([.2, .3, .4, .5])],
                      "slow": [run([.5, .6, .7, .8]), run([.5], diverged_at=12)],
                      "none": [run([.1, .2, .3, .4])]}}
    res["report"]["cosine"] = res["report"]["fixed"]
    out = lr_free.equal_time(res, {"fixed": 1.0, "slow": 2.9, "cosine": 1.1})
    assert out["cosine"]["steps"] == 40             # planned for T: read at T
    assert lr_free.equal_time(res, {"cosine": 1.1}, budget=40)["cosine"]["steps"] == 40
    assert lr_free.equal_time(res, {"cosine": 1.1}, budget=35)["cosine"]["steps"] == 30
    out = lr_free.equal_time(res, {"fixed": 1.0, "slow": 2.9})
    assert set(out) == {"fixed", "slow"}
    assert out["fixed"]["steps"] == 40 and out["fixed"]["acc"]["mean"] == pytest.approx(0.45)
    assert out["slow"]["steps"] == 10                  # 40 / 2.9 = 13.8 steps: read at 10
    assert out["slow"]["acc"]["mean"] == pytest.approx(0.5)
    out = lr_free.equal_time(res, {"fixed": 1.0, "slow": 1.9})    # 21 steps: read at 20
    assert out["slow"]["steps"] == 20
    assert out["slow"]["acc"]["mean"] == pytest.approx(0.3)       # (0.6 + 0) / 2


def _fake_cifar(name="cifar10", n_val=100, seed=0, device=None, **kw):
    g = torch.Generator().manual_seed(seed)

    def part(n):
        return (torch.randn(n, 3, 32, 32, generator=g),
                torch.randint(0, 10, (n,), generator=g))
    return {"train": part(200), "val": part(n_val), "test": part(120)}


def test_the_cifar_settings_run_with_batchnorm(monkeypatch):
    """``lr-free-cifar`` (VGG-11-BN, momentum) runs end to end on CIFAR-shaped data: every
    method gives a result or a divergence; ``E`` is evaluated in evaluation mode, so that the
    validation minibatches leave BatchNorm's running statistics alone; evaluation restores
    training mode."""
    import hypergrad.data

    monkeypatch.setattr(hypergrad.data, "cifar_split", _fake_cifar)
    s = ex.settings("lr-free-cifar", "tiny")
    assert s["dataset"] == "cifar10" and s["model"] == "vgg11_bn" and s["momentum"] == 0.9
    for scale in ex.SCALES:
        assert ex.settings("lr-free-cifar", scale)["unit_prefix"] == "lr_free_cifar"
    task = lr_free.LrFreeTask(s)
    net, opt, sched, averager, vb, val = lr_free._setup(task, "marthe-auto-mu",
                                                        s["grids"]["marthe-auto-mu"][0], 0)
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    opt.val_closure()
    assert torch.equal(bn.running_mean, before) and net.training
    for m in ("fixed", "marthe-auto-mu", "prodigy"):
        value = s["grids"][m][0] if m in lr_free.TUNED else None
        r = lr_free.train_run(task, m, value, 0)
        assert r["diverged"] or 0 <= r["test_acc"] <= 1
        assert len(r["curve"]["step"]) == (0 if r["diverged"] else 2)
    ev = task.evaluate(task.module(0))
    assert set(ev) == {"val_loss", "val_acc", "test_acc"}


@needs_mnist
def test_the_budget_explorer_redraws(tiny):
    """The explorer of chapter 12 draws once, and again with another budget; the figure's
    labels give the steps each method takes in that budget."""
    from hypergrad.viz import lr_free as lv

    _, res, _ = tiny
    cost = {m: 2.0 for m in lr_free.METHODS}
    cost["fixed"] = 1.0
    w = lv.explore_budget(res, cost)
    before = w.output.outputs[0]["data"]["image/png"]
    w.controls["budget"].value = 2
    assert w.output.outputs[0]["data"]["image/png"] != before
    fig = lv.budget_figure(res, cost, 4)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "fixed η, 4 steps" in labels and "HD, 2 steps" in labels
    assert all(t.get_fontsize() >= 10 for t in fig.axes[0].get_yticklabels())


@needs_mnist
def test_lrs_opt_is_paired_with_the_fixed_rate_on_part_two_seeds():
    """LRS-OPT's Part II references share the MLP task's weights and minibatches on their
    seeds, so they pair with the fixed rate there; the CNN task has none."""
    from pathlib import Path

    from hypergrad.viz import lr_free as lv

    root = Path(__file__).resolve().parent.parent / "results"
    units = root / "mnist-schedules" / "paper" / "units"
    mlp = ex.run_lr_free(ex.settings("lr-free", "paper"), out_dir=root / "lr-free" / "paper",
                         progress=False, readonly=True)
    text = lv.lrs_opt_text(mlp, units)
    seeds = ex.settings("mnist-schedules", "paper")["lrs_opt"]["seeds"]
    assert f"run on {len(seeds)} of these seeds" in text and "Adam" in text
    cnn = {"settings": ex.settings("lr-free-cnn", "paper"), "report": {}}
    assert lv.lrs_opt_text(cnn, units) == ""
    assert lv.lrs_opt_text(mlp, root / "nowhere") == ""


def test_a_trace_beyond_float32_is_none_without_a_warning():
    """A step size beyond float32's range (MARTHE's adaptive β can send η there before the
    run is stopped) is stored as None, as a non-finite one is, and warns nothing."""
    import warnings

    from hypergrad.experiments.store import float32_trace

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float32_trace([0.1, 1e39, -1e300, float("inf"), None]) == [0.1, None, None,
                                                                          None, None]


def test_every_method_has_its_own_colour():
    from hypergrad.viz import lr_free as lv

    colours = [lv._colour(m) for m in lr_free.METHODS]
    assert len(set(colours)) == len(colours), colours
