"""LRS-OPT's outer optimisers (Adam, Nesterov beside the paper's PGD), the projection onto
[0, max_lr], and resuming: only the same run, with the optimiser's state, from a sound file;
iterate averaging, snapshots and their evaluation on fixed held-out draws (issue 21)."""

import json

import pytest
import torch

import hypergrad as hg
from hypergrad.hypergradient import unroll
from hypergrad.lrs_opt import (
    OPTIMIZERS,
    LrsOptResult,
    ResumeError,
    fingerprint,
    lrs_opt,
)
from hypergrad.lrs_opt_heldout import heldout_objective, trace_heldout
from tests.helpers import DT, problem

T = 8


def _problem(seed=0):
    _, loss, params, batches, objective = problem(T=T, seed=seed)
    return hg.sgd(loss), params, batches[:T], objective


def _run(optimizer, iterations, step_size, dtype=DT, **kw):
    dyn, params, batches, objective = _problem()
    params = {k: v.to(dtype) for k, v in params.items()}
    batches = [(x.to(dtype), y) for x, y in batches]
    def obj(p):
        return objective({k: v.to(DT) for k, v in p.items()}).to(dtype)

    return lrs_opt(dyn, params, torch.full((T,), 0.2, dtype=dtype), batches, obj,
                   iterations=iterations, step_size=step_size, optimizer=optimizer,
                   progress=False, **kw)


def _grads(optimizer, iterations, step_size, **kw):
    """The schedules and hypergradients a run sees, from its callback."""
    seen = []
    res = _run(optimizer, iterations, step_size,
               callback=lambda it, lrs, v, g: seen.append((lrs.clone(), g.clone())), **kw)
    return res, seen


def test_adam_and_nesterov_are_the_textbook_updates():
    """Each step equals the textbook update of the hypergradient the run saw, then the clip."""
    res, seen = _grads("adam", 4, 0.01, max_lr=0.3)
    lrs, m, v = torch.full((T,), 0.2, dtype=DT), 0, 0
    for k, (after, g) in enumerate(seen, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lrs = (lrs - 0.01 * (m / (1 - 0.9 ** k)) / ((v / (1 - 0.999 ** k)).sqrt() + 1e-8)
               ).clamp(0, 0.3)
        assert torch.allclose(after, lrs, rtol=0, atol=1e-15)
    res, seen = _grads("nesterov", 4, 0.05, optimizer_options={"momentum": 0.5})
    lrs, buf = torch.full((T,), 0.2, dtype=DT), 0
    for after, g in seen:
        buf = 0.5 * buf + g
        lrs = (lrs - 0.05 * (g + 0.5 * buf)).clamp(min=0)
        assert torch.allclose(after, lrs, rtol=0, atol=1e-15)
    # momentum 0 is plain PGD, exactly
    a = _run("nesterov", 3, 0.3, optimizer_options={"momentum": 0.0})
    b = _run("pgd", 3, 0.3)
    assert a.lrs == b.lrs and a.history == b.history


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_projection_keeps_the_schedule_in_bounds(optimizer, dtype):
    """A huge step drives every entry against a bound; it stays in [0, max_lr] in its dtype."""
    max_lr = 0.3
    res = _run(optimizer, 3, 1e3, dtype=dtype, max_lr=max_lr)
    s = res.schedule(dtype)
    assert res.diverged is None
    assert bool((s >= 0).all()) and bool((s <= torch.tensor(max_lr, dtype=dtype)).all())
    assert bool(((s == 0) | (s == torch.tensor(max_lr, dtype=dtype))).any())   # a bound is hit
    assert res.schedule(dtype).dtype == dtype


@pytest.mark.parametrize("optimizer", ["adam", "nesterov"])
def test_resume_continues_exactly_with_the_optimiser_state(tmp_path, optimizer):
    straight = _run(optimizer, 6, 0.02)
    path = tmp_path / "run.json"
    _run(optimizer, 3, 0.02, save_path=path, save_every=1)
    saved = json.loads(path.read_text())
    assert saved["optimizer_state"] is not None and len(saved["optimizer_state"]) >= 1
    calls = []
    resumed = _run(optimizer, 6, 0.02, save_path=path,
                   callback=lambda it, *a: calls.append(it))
    assert calls == [3, 4, 5]
    assert resumed.lrs == straight.lrs and resumed.history == straight.history
    # without its state (e.g. a hand-edited file) a momentum run would not be exact: refused
    saved = json.loads(path.read_text())
    saved["optimizer_state"] = None
    path.write_text(json.dumps(saved))
    with pytest.raises(ResumeError, match="optimizer_state"):
        _run(optimizer, 8, 0.02, save_path=path)


def test_resume_with_another_optimiser_is_refused(tmp_path):
    path = tmp_path / "run.json"
    _run("pgd", 2, 0.02, save_path=path)
    with pytest.raises(ResumeError, match="optimizer.*another outer optimiser"):
        _run("adam", 4, 0.02, save_path=path)
    path2 = tmp_path / "run2.json"
    _run("adam", 2, 0.02, save_path=path2)
    with pytest.raises(ResumeError, match="beta1"):
        _run("adam", 4, 0.02, save_path=path2, optimizer_options={"beta1": 0.5})


def test_bad_optimiser_names_and_options():
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'nesterov', 'pgd'\], got 'sgd'"):
        _run("sgd", 1, 0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        _run(None, 1, 0.1)
    with pytest.raises(ValueError, match=r"'adam' has no option\(s\) \['momentum'\]"):
        _run("adam", 1, 0.1, optimizer_options={"momentum": 0.9})
    with pytest.raises(ValueError, match="'pgd' has no option"):
        _run("pgd", 1, 0.1, optimizer_options={"beta1": 0.9})
    for opts, msg in [({"beta1": 1.0}, r"beta1=1.0 must be in \[0, 1\)"),
                      ({"beta2": -0.1}, "beta2=-0.1"), ({"eps": 0.0}, "eps=0.0 must be > 0"),
                      ({"eps": float("nan")}, "finite"), ({"beta1": "0.9"}, "finite number")]:
        with pytest.raises(ValueError, match=msg):
            _run("adam", 1, 0.1, optimizer_options=opts)
    with pytest.raises(ValueError, match="momentum=1.5"):
        _run("nesterov", 1, 0.1, optimizer_options={"momentum": 1.5})
    with pytest.raises(ValueError, match="max_lr"):
        _run("pgd", 1, 0.1, max_lr=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        _run("pgd", 1.5, 0.1)


# ------------------------------------------------------------------ the resume key (issue 12)
def _pgd(tmp_path, params=None, lrs=None, batches=None, dyn=None, name="run.json", its=2):
    d, p, b, objective = _problem()
    return lrs_opt(dyn or d, p if params is None else params,
                   torch.full((T,), 0.1, dtype=DT) if lrs is None else lrs,
                   b if batches is None else batches, objective, iterations=its, step_size=0.1,
                   save_path=tmp_path / name, progress=False)


def test_resume_from_another_initial_schedule_is_refused(tmp_path):
    _pgd(tmp_path)
    with pytest.raises(ResumeError, match="init_lrs.*another initial schedule"):
        _pgd(tmp_path, lrs=torch.full((T,), 0.05, dtype=DT), its=4)
    assert _pgd(tmp_path, its=4).iterations == 4          # the same run resumes


def test_resume_from_other_weights_or_model_is_refused(tmp_path):
    _pgd(tmp_path)
    _, params, _, _ = _problem()
    other = {k: v + 1e-12 for k, v in params.items()}           # same shapes, other values
    with pytest.raises(ResumeError, match="init_params.*other initial weights"):
        _pgd(tmp_path, params=other, its=4)
    # another model of the same dynamics repr (the case of issue 12): shapes named
    _, loss2, params2, batches2, _ = problem(T=T, sizes=(5, 9, 3))
    with pytest.raises(ResumeError, match=r"param_shapes.*\[9, 5\].*another model"):
        lrs_opt(hg.sgd(loss2), params2, torch.full((T,), 0.1, dtype=DT), batches2[:T],
                lambda p: loss2(p, batches2[T]), iterations=4, step_size=0.1,
                save_path=tmp_path / "run.json", progress=False)
    dyn, _, _, _ = _problem()
    with pytest.raises(ResumeError, match="dynamics.*sgd_momentum"):
        _pgd(tmp_path, dyn=hg.sgd(dyn.loss, momentum=0.9), its=4)


def test_resume_with_other_minibatches_is_refused(tmp_path):
    _, params, batches, _ = _problem()
    _pgd(tmp_path)
    with pytest.raises(ResumeError, match="batches.*other minibatches"):
        _pgd(tmp_path, batches=list(reversed(batches)), its=4)
    # minibatches given per iteration: the last iteration's are checked again on resume
    dyn, params, batches, objective = _problem()

    def fresh(shift):
        return lambda it: batches[(it + shift) % T:] + batches[:(it + shift) % T]

    path = tmp_path / "fresh.json"
    run = dict(iterations=3, step_size=0.1, save_path=path, progress=False)
    lrs = torch.full((T,), 0.1, dtype=DT)
    lrs_opt(dyn, params, lrs, fresh(0), objective, **run)
    with pytest.raises(ResumeError, match="minibatches of iteration 2 differ"):
        lrs_opt(dyn, params, lrs, fresh(1), objective, **{**run, "iterations": 5})
    assert lrs_opt(dyn, params, lrs, fresh(0), objective, **{**run, "iterations": 5}).iterations == 5


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "run.json"
    _pgd(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])                   # truncated
    with pytest.raises(ResumeError, match=r"run\.json.*not valid JSON") as e:
        _pgd(tmp_path, its=4)
    assert not isinstance(e.value, json.JSONDecodeError)
    for foreign, msg in [([1, 2, 3], "holds a list"), ({"hello": 1}, "missing"),
                         ({**json.loads(text), "extra": 1}, "unknown entries"),
                         ({**json.loads(text), "lrs": "abc"}, "lrs is not"),
                         ({**json.loads(text), "iterations": -1}, "iterations=-1"),
                         ({**json.loads(text), "history": [1.0]}, "history is not"),
                         ({**json.loads(text), "settings": []}, "settings is not")]:
        path.write_text(json.dumps(foreign))
        with pytest.raises(ResumeError, match=r"run\.json.*" + msg):
            _pgd(tmp_path, its=4)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ResumeError, match="run.json"):
        LrsOptResult.load(path)
    # an old file without the run's identity is refused, naming what it lacks
    old = json.loads(text)
    del old["settings"]["init_params"]
    path.write_text(json.dumps(old))
    with pytest.raises(ResumeError, match="no 'init_params'"):
        _pgd(tmp_path, its=4)


def test_fingerprint_sees_dtype_shape_and_values():
    a = torch.arange(6, dtype=DT)
    assert fingerprint(a) == fingerprint(a.clone())
    assert fingerprint(a) != fingerprint(a.float())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    b = a.clone()
    b[5] = torch.nextafter(b[5], torch.tensor(10.0, dtype=DT))
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint({"x": a, "y": 1}) == fingerprint({"y": 1, "x": a})
    assert fingerprint([(a, 1)]) != fingerprint([(a, 2)])
    assert fingerprint(a[::2]) == fingerprint(a[::2].contiguous())


# ------------------------------------------------------------------ iterate averaging (issue 21)
def _iterates(optimizer="pgd", iterations=6, step_size=0.05, **kw):
    """A run and the projected schedule after each of its iterations (from its callback)."""
    seen = []
    res = _run(optimizer, iterations, step_size,
               callback=lambda it, lrs, v, g: seen.append(lrs.clone()), **kw)
    assert len(seen) == res.iterations
    return res, seen


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
def test_the_average_is_the_mean_of_the_iterates(optimizer):
    step = 0.05 if optimizer == "pgd" else 0.01
    for k0 in (0, 2, 5):
        res, seen = _iterates(optimizer, 6, step, average_from=k0)
        mean = torch.stack(seen[k0:]).mean(0)
        assert res.average_from == k0 and res.averaged_count == 6 - k0
        assert torch.allclose(res.averaged_schedule(), mean, rtol=1e-14, atol=0)
        assert res.lrs == seen[-1].tolist()                     # the last iterate, beside it
    assert res.averaged == seen[-1].tolist()                    # one iterate: itself
    # averaging changes nothing of the run itself
    plain, _ = _iterates(optimizer, 6, step)
    assert plain.lrs == res.lrs and plain.history == res.history
    assert plain.averaged is None and plain.averaged_count == 0 and plain.average_from is None


def test_nothing_is_averaged_from_beyond_the_last_iteration():
    for k0 in (4, 5, 100):
        res = _run("pgd", 4, 0.05, average_from=k0)
        assert res.averaged is None and res.averaged_count == 0 and res.averaged_schedule() is None


def test_bad_average_from_and_snapshot_every_are_named():
    for bad in (-1, 1.5, True, "3", 2.0):
        with pytest.raises(ValueError, match=f"average_from must be an iteration index.*{bad!r}"):
            _run("pgd", 2, 0.05, average_from=bad)
    for bad in (0, -2, 1.0, False, "2"):
        with pytest.raises(ValueError, match=f"snapshot_every must be an integer >= 1.*{bad!r}"):
            _run("pgd", 2, 0.05, snapshot_every=bad)


def test_a_diverged_iterate_leaves_the_average():
    """Training on iteration 4's minibatches gives NaN: the run stops there, lrs falls back to
    the schedule of iteration 2, and the schedule that diverged (iteration 3's) leaves the
    average again."""
    dyn, params, batches, objective = _problem()
    nan = [(x * float("nan"), y) for x, y in batches]
    seen = []
    res = lrs_opt(dyn, params, torch.full((T,), 0.2, dtype=DT),
                  lambda it: nan if it == 4 else batches, objective, iterations=6,
                  step_size=0.05, average_from=1, progress=False,
                  callback=lambda it, lrs, v, g: seen.append(lrs.clone()))
    assert res.diverged["iteration"] == 4 and len(seen) == 4
    assert res.lrs == seen[2].tolist() and res.diverged["lrs"] == seen[3].tolist()
    assert res.averaged_count == 2
    assert torch.allclose(res.averaged_schedule(), torch.stack(seen[1:3]).mean(0),
                          rtol=1e-14, atol=1e-16)


def _fresh_run(iterations, path=None, fail_at=None, optimizer="pgd", **kw):
    """LRS-OPT with minibatches drawn per iteration (a rotation); ``fail_at``: the draw of that
    iteration raises, as a run killed there."""
    dyn, params, batches, objective = _problem()

    def draw(it):
        if it == fail_at:
            raise KeyboardInterrupt(f"killed at iteration {it}")
        return batches[it % T:] + batches[:it % T]

    return lrs_opt(dyn, params, torch.full((T,), 0.2, dtype=DT), draw, objective,
                   iterations=iterations, step_size=0.05 if optimizer == "pgd" else 0.01,
                   optimizer=optimizer, save_path=path, progress=False, **kw)


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
@pytest.mark.parametrize("fail_at", [2, 5, 8])
def test_an_interrupted_run_resumes_to_the_same_average(tmp_path, optimizer, fail_at):
    """Killed at iteration 2 (before averaging begins), 5 or 8 (in it), with a file saved every
    2 iterations: the resumed run ends bit for bit where the uninterrupted one does."""
    kw = dict(optimizer=optimizer, average_from=4, snapshot_every=3, save_every=2)
    straight = _fresh_run(10, **kw)
    path = tmp_path / "run.json"
    with pytest.raises(KeyboardInterrupt):
        _fresh_run(10, path, fail_at=fail_at, **kw)
    saved = LrsOptResult.load(path)
    assert saved.iterations == fail_at - fail_at % 2
    assert saved.averaged_count == max(0, saved.iterations - 4)
    resumed = _fresh_run(10, path, **kw)
    assert resumed.iterations == 10 and resumed.averaged_count == 6
    assert resumed.lrs == straight.lrs and resumed.history == straight.history
    assert resumed.averaged == straight.averaged
    assert resumed.snapshots == straight.snapshots
    assert LrsOptResult.load(path).averaged == straight.averaged


def _old_file(path):
    """Make ``path`` a file of a version without averaging or snapshots."""
    data = json.loads(path.read_text())
    for key in ("average_from", "averaged", "averaged_count", "snapshot_every", "snapshots"):
        del data[key]
    path.write_text(json.dumps(data))


def test_an_older_file_resumes_with_averaging_only_from_its_iteration_on(tmp_path):
    path = tmp_path / "old.json"
    _fresh_run(4, path)
    _old_file(path)
    text = path.read_text()
    for k0 in (0, 2, 3):        # iterates 0…3 are not in the file
        with pytest.raises(ResumeError, match=rf"old\.json.*average_from={k0}.*saved after 4 "
                                              r"iterations.*average_from >= 4"):
            _fresh_run(8, path, average_from=k0)
    for k0 in (4, 6):
        path.write_text(text)
        resumed = _fresh_run(8, path, average_from=k0)
        straight = _fresh_run(8, average_from=k0)
        assert resumed.averaged_count == 8 - k0
        assert resumed.averaged == straight.averaged and resumed.lrs == straight.lrs
    # snapshots likewise: a cadence with no snapshot up to iteration 4
    with pytest.raises(ResumeError, match=r"snapshot_every=2.*iterations \[\], not \[2, 4\]"):
        path.write_text(text)
        _fresh_run(8, path, snapshot_every=2)
    path.write_text(text)
    resumed = _fresh_run(10, path, snapshot_every=5)
    assert resumed.snapshots == _fresh_run(10, snapshot_every=5).snapshots
    # and a plain resume of the old file is the plain run
    path.write_text(text)
    assert _fresh_run(8, path).lrs == _fresh_run(8).lrs


def test_averaging_or_snapshots_under_way_are_not_dropped_or_changed(tmp_path):
    path = tmp_path / "run.json"
    _fresh_run(4, path, average_from=1, snapshot_every=2)
    for k0 in (None, 0, 2, 6):
        with pytest.raises(ResumeError, match=rf"average_from={k0}.*from iteration 1 \(3 iterates"):
            _fresh_run(8, path, average_from=k0, snapshot_every=2)
    for every in (None, 1, 3, 4):
        with pytest.raises(ResumeError, match=rf"snapshot_every={every}.*snapshot_every=2"):
            _fresh_run(8, path, average_from=1, snapshot_every=every)
    path2 = tmp_path / "early.json"         # saved before averaging began: may move it on
    _fresh_run(3, path2, average_from=5)
    assert _fresh_run(8, path2, average_from=3).averaged == _fresh_run(8, average_from=3).averaged


def test_a_file_with_a_malformed_average_or_snapshots_is_refused(tmp_path):
    path = tmp_path / "run.json"
    _fresh_run(4, path, average_from=1, snapshot_every=2)
    good = json.loads(path.read_text())
    assert good["averaged_count"] == 3 and len(good["snapshots"]) == 2
    for bad, msg in [({"averaged": good["averaged"][:-1]}, "averaged is not"),
                     ({"averaged": None}, "averaged is not"),
                     ({"averaged_count": 9}, "averaged_count=9"),
                     ({"average_from": -1}, "average_from=-1"),
                     ({"snapshot_every": 0}, "snapshot_every=0"),
                     ({"snapshots": [{"iteration": 2}]}, "snapshots is not")]:
        path.write_text(json.dumps({**good, **bad}))
        with pytest.raises(ResumeError, match=r"run\.json.*" + msg):
            _fresh_run(8, path, average_from=1, snapshot_every=2)


# ------------------------------------------------------------------ snapshots, held-out draws
def _f32(values):
    return torch.tensor(values, dtype=torch.float64).float()


def test_snapshots_follow_their_cadence_in_float32():
    res, seen = _iterates("pgd", 7, 0.05, average_from=4, snapshot_every=3)
    assert [s["iteration"] for s in res.snapshots] == [3, 6] and res.snapshot_every == 3
    running = [torch.stack(seen[4:it + 1]).mean(0) for it in range(4, len(seen))]
    for snap in res.snapshots:
        n = snap["iteration"]
        assert torch.equal(_f32(snap["lrs"]), seen[n - 1].float())       # float32, exactly
        assert snap["lrs"] != seen[n - 1].tolist()                        # and rounded to it
        assert all(len(repr(v)) <= 12 for v in snap["lrs"])              # in few digits
        if n - 1 < 4:
            assert snap["averaged"] is None
        else:
            assert torch.equal(_f32(snap["averaged"]), running[n - 1 - 4].float())
    assert _run("pgd", 2, 0.05, snapshot_every=3).snapshots == []
    assert _run("pgd", 2, 0.05).snapshots is None
    # every iteration; the first snapshot is after the first step
    res, seen = _iterates("pgd", 3, 0.05, snapshot_every=1)
    assert [s["iteration"] for s in res.snapshots] == [1, 2, 3]


def _draws(n):
    """``n`` held-out draws of T minibatches for the problem of ``_problem``."""
    out = []
    for d in range(n):
        _, _, _, batches, _ = problem(T=T, seed=100 + d)
        out.append(batches[:T])
    return out


def test_heldout_objective_is_paired_and_deterministic():
    dyn, params, _, objective = _problem()
    draws = _draws(3)
    schedules = {"low": torch.full((T,), 0.05, dtype=DT), "high": [0.4] * T,
                 "zero": torch.zeros(T, dtype=DT)}
    out = heldout_objective(dyn, params, schedules, draws, objective)
    assert list(out) == ["low", "high", "zero"] and all(len(v) == 3 for v in out.values())
    for name, lrs in schedules.items():
        for d, draw in enumerate(draws):
            state, _ = unroll(dyn, params, torch.as_tensor(lrs, dtype=DT), draw)
            assert out[name][d] == float(objective(state.w["params"]))
    # η = 0 leaves w_0: the same value on every draw
    assert out["zero"] == [float(objective(params))] * 3
    assert len(set(out["low"])) == 3                       # the draws differ
    # deterministic, and paired: a schedule's value on a draw does not depend on the others
    assert heldout_objective(dyn, params, schedules, draws, objective) == out
    alone = heldout_objective(dyn, params, {"high": schedules["high"]}, draws[::-1], objective)
    assert alone == {"high": out["high"][::-1]}


def _quadratic(a):
    """``E(w) = a (w − 0)² / 2`` from ``w_0 = 1/a``, one SGD step: ``f_1(η) = (1 − aη)² / (2a)``
    is least at ``η* = 1/a``, as large as one likes."""
    def loss(p, batch):
        return 0.5 * a * (p["w"] ** 2).sum()

    return hg.sgd(loss), {"w": torch.tensor([1.0 / a], dtype=DT)}, (lambda p: loss(p, None))


def test_heldout_objective_reports_a_diverging_draw_as_none():
    dyn, params, objective = _quadratic(1.0)
    # η = 1e50: w_t = (1 − η)^t overflows float64 on the draw of 8 steps, not on that of 2
    draws = [[torch.zeros(1)] * 2, [torch.zeros(1)] * 8]
    out = heldout_objective(dyn, params, {"one": [1.0] * 2, "big": [1e50] * 2},
                            [draws[0], draws[0]], objective)
    assert out["one"] == [0.0, 0.0] and out["big"][0] == out["big"][1] > 1e199
    out = heldout_objective(dyn, params, {"big": [1e50] * 8, "one": [1.0] * 8},
                            [draws[1]], objective)
    assert out == {"big": [None], "one": [0.0]}


def test_heldout_objective_names_bad_input():
    dyn, params, _, objective = _problem()
    draws = _draws(2)
    ok = {"a": [0.1] * T}
    with pytest.raises(ValueError, match="draw 1 has 3 minibatches.*T = 8"):
        heldout_objective(dyn, params, ok, [draws[0], draws[1][:3]], objective)
    with pytest.raises(ValueError, match="draws must be a non-empty list"):
        heldout_objective(dyn, params, ok, [], objective)
    with pytest.raises(ValueError, match="schedule 'b'.*>= 0"):
        heldout_objective(dyn, params, {**ok, "b": [-0.1] * T}, draws, objective)
    with pytest.raises(ValueError, match="schedule 'b'.*7 learning rates"):
        heldout_objective(dyn, params, {**ok, "b": [0.1] * (T - 1)}, draws, objective)
    with pytest.raises(ValueError, match="schedules must be a non-empty dict"):
        heldout_objective(dyn, params, [[0.1] * T], draws, objective)


def test_trace_heldout_evaluates_the_snapshots_on_the_same_draws():
    dyn, params, _, objective = _problem()
    res = _run("pgd", 6, 0.05, average_from=3, snapshot_every=2)
    draws = _draws(2)
    trace = trace_heldout(dyn, params, res, draws, objective)
    assert trace["iteration"] == [2, 4, 6] and trace["draws"] == 2
    assert trace["averaged"][0] is None                       # before averaging began
    for i, snap in enumerate(res.snapshots):
        want = heldout_objective(dyn, params, {"lrs": snap["lrs"]}, draws, objective)["lrs"]
        assert trace["lrs"][i] == want
    want = heldout_objective(dyn, params, {"a": res.snapshots[2]["averaged"]}, draws, objective)
    assert trace["averaged"][2] == want["a"]
    assert trace_heldout(dyn, params, res.snapshots, draws, objective) == trace
    with pytest.raises(ValueError, match="no snapshots.*snapshot_every"):
        trace_heldout(dyn, params, _run("pgd", 1, 0.05), draws, objective)


# ------------------------------------------------------------------ no cap (issue 21)
@pytest.mark.parametrize("a", [1e-2, 1e-4])
def test_max_lr_none_is_no_cap(a):
    """With ``max_lr=None`` PGD reaches ``η* = 1/a`` (100, 10 000) geometrically (γ = 1/(2a)
    halves the distance each iteration); a cap holds it at the cap."""
    dyn, params, objective = _quadratic(a)
    batches = [torch.zeros(1)]
    run = dict(iterations=30, step_size=0.5 / a, progress=False)
    free = lrs_opt(dyn, params, [0.1], batches, objective, **run)
    assert free.settings["max_lr"] is None
    assert free.lrs[0] == pytest.approx(1 / a, rel=1e-6) and free.lrs[0] > 0.99 / a
    assert free.history[-1] < 1e-9 * free.history[0]
    cap = 0.5 / a
    capped = lrs_opt(dyn, params, [0.1], batches, objective, max_lr=cap, **run)
    assert capped.lrs == [cap]
