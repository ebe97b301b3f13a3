"""LRS-OPT's outer optimisers (Adam, Nesterov beside the paper's PGD), the projection onto
[0, max_lr], and resuming: only the same run, with the optimiser's state, from a sound file."""

import json

import pytest
import torch

import hypergrad as hg
from hypergrad.lrs_opt import OPTIMIZERS, LrsOptResult, ResumeError, fingerprint, lrs_opt
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
