"""LRS-OPT (projected gradient descent on the schedule) and the Section 6 baselines."""

import json

import pytest
import torch

import hypergrad as hg
from hypergrad.lrs_opt import LrsOptResult, lrs_opt
from hypergrad.schedules import constant, exponential_decay, fixed_schedule, sgdr, staircase
from tests.helpers import DT, problem

T = 8


def _problem():
    _, loss, params, batches, objective = problem(T=T)
    return hg.sgd(loss), params, batches[:T], objective


def test_public_name():
    assert hg.lrs_opt is lrs_opt and hg.LrsOptResult is LrsOptResult


def test_one_iteration_is_a_projected_gradient_step():
    dyn, params, batches, objective = _problem()
    lrs = torch.full((T,), 0.2, dtype=DT)
    value, grad = hg.hypergradient(dyn, params, lrs, batches, objective)
    res = lrs_opt(dyn, params, lrs, batches, objective, iterations=1, step_size=0.5, progress=False)
    expected = (lrs - 0.5 * grad).clamp(min=0)
    assert torch.allclose(res.schedule(), expected, rtol=0, atol=1e-15)
    assert res.history == [float(value)]
    big = lrs_opt(dyn, params, lrs, batches, objective, iterations=1, step_size=1e6, progress=False)
    assert min(big.lrs) == 0.0 and max(big.lrs) > 0          # the projection is active
    capped = lrs_opt(dyn, params, lrs, batches, objective, iterations=1, step_size=1e6,
                     max_lr=0.3, progress=False)
    assert max(capped.lrs) == 0.3


def test_lrs_opt_decreases_the_objective_with_fresh_batches():
    dyn, params, batches, objective = _problem()
    g = torch.Generator().manual_seed(5)
    pool = [(torch.randn(8, 5, dtype=DT, generator=g), torch.randint(0, 3, (8,), generator=g))
            for _ in range(40)]
    seen = []

    def fresh(it):
        seen.append(it)
        return [pool[(it * 3 + t) % 40] for t in range(T)]

    res = lrs_opt(dyn, params, torch.full((T,), 0.05, dtype=DT), batches, objective,
                  iterations=15, step_size=0.05, progress=False)
    assert res.history[-1] < res.history[0]
    res2 = lrs_opt(dyn, params, torch.full((T,), 0.05, dtype=DT), fresh, objective,
                   iterations=3, step_size=0.05, progress=False)
    assert seen == [0, 1, 2] and res2.iterations == 3


def test_resume_continues_exactly(tmp_path):
    dyn, params, batches, objective = _problem()
    lrs = torch.full((T,), 0.1, dtype=DT)
    straight = lrs_opt(dyn, params, lrs, batches, objective, iterations=6, step_size=0.1,
                       progress=False)
    path = tmp_path / "run.json"
    lrs_opt(dyn, params, lrs, batches, objective, iterations=3, step_size=0.1, save_path=path,
            save_every=1, progress=False)
    calls = []
    resumed = lrs_opt(dyn, params, lrs, batches, objective, iterations=6, step_size=0.1,
                      save_path=path, progress=False, callback=lambda it, *a: calls.append(it))
    assert calls == [3, 4, 5]                       # finished iterations are not redone
    assert resumed.lrs == straight.lrs and resumed.history == straight.history
    saved = json.loads(path.read_text())
    assert saved["iterations"] == 6 and saved["meta"]["wall_time_s"] >= 0
    assert "commit" in saved["meta"] and "torch" in saved["meta"]
    assert LrsOptResult.load(path).lrs == straight.lrs
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="step_size"):
        lrs_opt(dyn, params, lrs, batches, objective, iterations=7, step_size=0.2, save_path=path,
                progress=False)
    with pytest.raises(ValueError, match="seed"):
        lrs_opt(dyn, params, lrs, batches, objective, iterations=7, step_size=0.1, save_path=path,
                progress=False, settings={"seed": 3})


def test_divergence_returns_the_last_good_schedule(tmp_path):
    """A diverging iteration ends the run; its result keeps the last schedule with a finite f_T."""
    dyn = hg.sgd(lambda p, b: 0.5 * (p["w"] ** 2).sum())
    params = {"w": torch.ones(3, dtype=DT)}
    objective = lambda p: 0.5 * (p["w"] ** 2).sum()  # noqa: E731
    T_ = 6
    # f_T = ½ Π(1-η_t)² |w_0|²: a big step size sends η past 2, where the run blows up.
    path = tmp_path / "lrs.json"
    res = lrs_opt(dyn, params, torch.full((T_,), 0.5, dtype=DT), [None] * T_, objective,
                  iterations=50, step_size=1e305, progress=False, save_path=path)
    assert res.diverged is not None and res.iterations == res.diverged["iteration"] >= 1
    assert res.lrs == res.previous and len(res.history) == res.iterations
    assert max(res.diverged["lrs"]) > 1e200 and max(res.lrs) < 1e200
    value, _ = hg.hypergradient(dyn, params, torch.tensor(res.lrs, dtype=DT), [None] * T_, objective)
    assert value == res.history[-1]                          # lrs is the schedule of history[-1]
    assert LrsOptResult.load(path).diverged == res.diverged  # saved, and a resume returns it
    again = lrs_opt(dyn, params, torch.full((T_,), 0.5, dtype=DT), [None] * T_, objective,
                    iterations=50, step_size=1e305, progress=False, save_path=path)
    assert again.lrs == res.lrs and again.iterations == res.iterations


@pytest.mark.parametrize("method", ["exponential", "staircase", "sgdr"])
def test_fixed_schedule_equals_the_baselines_at_paper_length(method):
    spec = {"exponential": {"gamma": 0.99}, "staircase": {"every": 60, "factor": 0.1},
            "sgdr": {"T_0": 10, "T_mult": 2}}[method]
    spe = 3
    got = fixed_schedule(method, spec, 0.1, 200 * spe, 200)
    want = {"exponential": lambda: exponential_decay(200 * spe, 0.1, 0.99, spe),
            "staircase": lambda: staircase(200 * spe, 0.1, 60, 0.1, spe),
            "sgdr": lambda: sgdr(200 * spe, 0.1, 10, 2, steps_per_epoch=spe)}[method]()
    torch.testing.assert_close(got, want)


def test_fixed_schedule_compressed_keeps_its_shape():
    s = fixed_schedule("staircase", {"every": 60, "factor": 0.1}, 1.0, 100, 200)
    assert len(s) == 100
    # ×0.1 at paper epochs 60, 120, 180, i.e. at 30 %, 60 %, 90 % of the run
    assert s[29] == 1.0 and s[30] == pytest.approx(0.1) and s[60] == pytest.approx(0.01)
    r = fixed_schedule("sgdr", {"T_0": 10, "T_mult": 2}, 1.0, 100, 200)
    restarts = [t for t in range(1, 100) if r[t] > r[t - 1] + 1e-12]
    assert restarts == [5, 15, 35, 75]          # paper epochs 10, 30, 70, 150
    with pytest.raises(ValueError, match="not a fixed schedule"):
        fixed_schedule("hd", {}, 1.0, 10, 200)


def test_bad_arguments():
    dyn, params, batches, objective = _problem()
    with pytest.raises(ValueError):
        lrs_opt(dyn, params, torch.full((T,), 0.1, dtype=DT), batches, objective, 1, step_size=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        lrs_opt(dyn, params, torch.full((T,), -0.1, dtype=DT), batches, objective, 1, 0.1)


def _torch_schedule(make_scheduler, epochs):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(out, dtype=DT)


def test_baselines_equal_torch_schedulers():
    E = 70
    S = torch.optim.lr_scheduler
    assert torch.allclose(exponential_decay(E, 0.1, 0.99),
                          _torch_schedule(lambda o: S.ExponentialLR(o, 0.99), E), rtol=1e-12)
    assert torch.allclose(staircase(E, 0.1, every=30),
                          _torch_schedule(lambda o: S.StepLR(o, 30, 0.1), E), rtol=1e-12)
    assert torch.allclose(sgdr(E, 0.1, T_0=10, T_mult=2),
                          _torch_schedule(lambda o: S.CosineAnnealingWarmRestarts(o, 10, 2), E),
                          rtol=1e-12, atol=1e-15)
    per_step = sgdr(3 * 5, 0.1, T_0=2, steps_per_epoch=5)
    assert torch.equal(per_step[:5], torch.full((5,), 0.1, dtype=DT))
    assert torch.equal(constant(4, 0.3), torch.full((4,), 0.3, dtype=DT))
