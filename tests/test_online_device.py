"""Algorithm 1 on the device: no host synchronisation inside a step, the divergence verdict
kept on the device, and the online state's record of what it was made with (issue 12)."""

import contextlib
import io
import math

import pytest
import torch

import hypergrad as hg
from tests.helpers import DT, problem

SYNCS = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy", "__format__")


@contextlib.contextmanager
def count_syncs(monkeypatch):
    """Count calls of the Tensor methods that read a value on the host."""
    calls = []
    for name in SYNCS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, _name=name, **k):
            calls.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    try:
        yield calls
    finally:
        monkeypatch.undo()


def _tiny(T=50):
    _, loss, params, batches, objective = problem(T=T)
    return loss, params, batches[:T], objective


@pytest.mark.parametrize("kw", [dict(mu="auto", kappa=1e-3), dict(mu=0.0), dict(mu=1.0),
                                dict(mu=0.5, kappa=0.1)])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_a_step_makes_no_host_synchronisation(monkeypatch, kw, opt):
    loss, params, batches, objective = _tiny()
    dyn = {"sgd": hg.sgd(loss), "momentum": hg.sgd(loss, momentum=0.9, weight_decay=1e-3),
           "adam": hg.adam(loss)}[opt]
    tuner = hg.Marthe(dyn, lr=0.1, beta=1e-3, **kw)
    ostate = tuner.init(params)
    with count_syncs(monkeypatch) as calls:
        for t in range(50):
            ostate, info = tuner.step(ostate, batches[t], objective, check=False)
            code = tuner.failure(info)
    assert calls == []
    assert ostate.t == 50 and code.item() == 0
    # the counter does count: the checked step reads its numbers on the host
    with count_syncs(monkeypatch) as calls:
        tuner.step(ostate, batches[0], objective)
    assert calls


def test_run_online_syncs_only_when_it_checks(monkeypatch):
    loss, params, batches, objective = _tiny()
    tuner = hg.Marthe(hg.sgd(loss), lr=0.1, beta=1e-3, kappa=1e-3)
    steps = []
    orig = tuner.step

    class Spy:      # counts the syncs inside each step of run_online
        def __getattr__(self, name):
            return getattr(tuner, name)

        def step(self, *a, **k):
            with count_syncs(monkeypatch) as calls:
                out = orig(*a, **k)
            steps.append(list(calls))
            return out

    _, hist = hg.run_online(Spy(), params, batches, objective, check_every=None)
    assert len(steps) == 50 and all(c == [] for c in steps)
    _, hist1 = hg.run_online(tuner, params, batches, objective, check_every=1)
    _, hist7 = hg.run_online(tuner, params, batches, objective, check_every=7)
    assert hist == hist1 == hist7 and len(hist.lr) == 50 and isinstance(hist.lr[0], float)


def _beale(p, batch=None):
    x, y = p["x"][0], p["x"][1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


@pytest.mark.parametrize("check_every", [1, 3, 64, None])
def test_divergence_is_named_at_its_step_whatever_the_check_interval(check_every):
    x0 = {"x": torch.tensor([1.0, 1.5], dtype=DT)}
    tuner = hg.RTHO(hg.sgd(_beale), lr=0.0, beta=1e-2)
    with pytest.raises(hg.DivergenceError) as ref:          # step by step, checked
        ostate = tuner.init(x0)
        for _ in range(300):
            ostate, _ = tuner.step(ostate, None, _beale)
    with pytest.raises(hg.DivergenceError) as err:
        hg.run_online(tuner, x0, [None] * 300, _beale, check_every=check_every,
                      max_loss_ratio=math.inf)
    assert err.value.step == ref.value.step and str(err.value) == str(ref.value)


@pytest.mark.parametrize("check_every", [1, 5, None])
def test_the_blowup_rule_on_the_device_names_the_same_step(check_every):
    x0 = {"x": torch.tensor([1.0, 1.5], dtype=DT)}
    tuner = hg.RTHO(hg.sgd(_beale), lr=0.0, beta=1e-2)
    first, expected = None, None
    ostate = tuner.init(x0)
    for _ in range(300):                 # the host rule, step by step
        ostate, info = tuner.step(ostate, None, _beale, check=False)
        first = float(info.loss) if first is None else first
        try:
            hg.loop.check_blowup(info.t, info.loss, first, 3.0)
        except hg.DivergenceError as e:
            expected = e
            break
    assert expected is not None and expected.reason.startswith("the training loss blew up")
    with pytest.raises(hg.DivergenceError) as err:
        hg.run_online(tuner, x0, [None] * 300, _beale, max_loss_ratio=3.0, check_every=check_every)
    assert err.value.step == expected.step and str(err.value) == str(expected)


# ---------------------------------------------------------------------- issue 12: bad input
@pytest.mark.parametrize("kw,match", [
    (dict(lr=math.inf), "lr"), (dict(beta=math.inf), "beta"), (dict(beta=math.nan), "beta"),
    (dict(mu=math.nan), "mu"), (dict(mu=math.inf), "mu"), (dict(kappa=math.inf), "kappa"),
    (dict(lr="fast"), "lr"), (dict(lr=1 + 2j), "lr"),
])
def test_non_finite_hyperparameters_are_refused_at_construction(kw, match):
    loss = _tiny(2)[0]
    with pytest.raises(ValueError, match=match):
        hg.Marthe(hg.sgd(loss), **(dict(lr=0.1, beta=0.01) | kw))


def test_run_online_arguments_are_checked_by_name():
    loss, params, batches, objective = _tiny(5)
    tuner = hg.Marthe(hg.sgd(loss), lr=0.1, beta=1e-3)
    with pytest.raises(ValueError, match=r"objectives has 3 entries but batches has 5"):
        hg.run_online(tuner, params, batches[:5], [objective] * 3)
    for bad in (0.0, -1.0, math.nan, "10"):
        with pytest.raises(ValueError, match=rf"max_loss_ratio must be .* got {bad!r}"):
            hg.run_online(tuner, params, batches[:5], objective, max_loss_ratio=bad)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=rf"check_every .* got {bad!r}"):
            hg.run_online(tuner, params, batches[:5], objective, check_every=bad)
    fixed = hg.FixedSchedule(hg.sgd(loss), [0.1] * 4)
    with pytest.raises(ValueError, match=r"schedule has 4 learning rates but the run needs 5"):
        hg.run_online(fixed, params, batches[:5], objective)
    with pytest.raises(ValueError, match=r"objectives must be a callable"):
        hg.run_online(tuner, params, batches[:5], 3.0)


def _saved(tuner, params, batches, objective, steps=3):
    ostate = tuner.init(params)
    for t in range(steps):
        ostate, _ = tuner.step(ostate, batches[t], objective)
    buf = io.BytesIO()
    torch.save(tuner.state_dict(ostate), buf)
    buf.seek(0)
    return ostate, torch.load(buf, weights_only=False)


def test_a_state_made_with_something_else_is_refused_naming_the_mismatch():
    loss, params, batches, objective = _tiny(5)
    momentum = hg.Marthe(hg.sgd(loss, momentum=0.9), lr=0.1, beta=1e-3)
    ostate, saved = _saved(momentum, params, batches, objective)
    plain = hg.Marthe(hg.sgd(loss), lr=0.1, beta=1e-3)
    with pytest.raises(ValueError, match=r"dynamics: the state has 'sgd_momentum', this tuner 'sgd'"):
        plain.step(ostate, batches[3], objective)         # the momentum would be lost silently
    with pytest.raises(ValueError, match=r"load_state_dict: .*dynamics"):
        plain.load_state_dict(saved)
    other_m = hg.Marthe(hg.sgd(loss, momentum=0.5), lr=0.1, beta=1e-3)
    with pytest.raises(ValueError, match=r"hyperparams: the state has .*'momentum': 0.9"):
        other_m.step(ostate, batches[3], objective)
    with pytest.raises(ValueError, match=r"dynamics: the state has 'sgd_momentum', this tuner 'adam'"):
        hg.Marthe(hg.adam(loss), lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"tuner: the state has 'tangent\+auto-mu', this tuner 'tangent'"):
        hg.HD(hg.sgd(loss, momentum=0.9), lr=0.1).step(ostate, batches[3], objective)
    with pytest.raises(ValueError, match=r"tuner: the state has 'schedule'"):
        momentum.step(hg.FixedSchedule(momentum.dyn, [0.1] * 5).init(params), batches[0], objective)
    f32 = dict(saved, state=dict(saved["state"], w=dict(saved["state"]["w"])))
    f32["state"]["w"]["params"] = {k: v.float() for k, v in saved["state"]["w"]["params"].items()}
    with pytest.raises(ValueError, match=r"dtype: the state's weights are \['torch.float32'\]"):
        momentum.load_state_dict(f32)
    # other shapes: the state's weights no longer match its record
    other = dict(saved, state=dict(saved["state"], w=dict(saved["state"]["w"])))
    other["state"]["w"]["params"] = {k: v[..., :2] if v.ndim == 2 else v
                                     for k, v in saved["state"]["w"]["params"].items()}
    with pytest.raises(ValueError, match=r"params: the state's weights have shapes"):
        momentum.load_state_dict(other)
    with pytest.raises(ValueError, match=r"params: the state's weights have shapes"):
        hg.Marthe.load_state_dict(other)        # on the class: its own consistency
    # the right tuner takes it, bit-identically
    back = momentum.load_state_dict(saved)
    a, b = momentum.step(back, batches[3], objective)[1], momentum.step(ostate, batches[3], objective)[1]
    assert a == b


def test_truncated_state_is_a_clear_error():
    loss, params, batches, objective = _tiny(5)
    tuner = hg.Marthe(hg.sgd(loss), lr=0.1, beta=1e-3)
    _, saved = _saved(tuner, params, batches, objective)
    for key in ("state", "lr"):
        with pytest.raises(ValueError, match="truncated or foreign"):
            tuner.load_state_dict({k: v for k, v in saved.items() if k != key})


# ---------------------------------------------------------------------- issue 12: clamps
def _quadratic(kappa, beta, lr, steps, mu=0.0, **kw):
    """GD on ½(x−1)², E the same function: Δ_t alternates in sign when η overshoots."""
    dyn = hg.sgd(lambda p, b: 0.5 * ((p["x"] - 1) ** 2).sum())
    E = lambda p: 0.5 * ((p["x"] - 1) ** 2).sum()  # noqa: E731
    tuner = hg.Marthe(dyn, lr=lr, beta=beta, mu=mu, kappa=kappa)
    return hg.run_online(tuner, {"x": torch.tensor([0.0], dtype=DT)}, [None] * steps, E,
                         max_loss_ratio=math.inf, **kw)[1]


def test_adaptive_beta_is_clamped_at_zero_and_then_eta_is_constant():
    """A large κ with Δ_t Δ_{t-1} < 0 drives β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0) to exactly 0
    (without the clamp it would go negative), and then η_t = η_{t-1}."""
    hist = _quadratic(kappa=100.0, beta=0.1, lr=1.9, steps=5)
    beta, eta = 0.1, 1.9
    for t in range(1, 5):
        beta = max(beta + 100.0 * hist.hypergradient[t] * hist.hypergradient[t - 1], 0.0)
        eta = max(eta - beta * hist.hypergradient[t], 0.0)
        assert hist.beta[t] == pytest.approx(beta, rel=1e-14)
        assert hist.lr[t] == pytest.approx(eta, rel=1e-14)
    assert all(b >= 0 for b in hist.beta)
    t0 = hist.beta.index(0.0)                              # β reaches exactly 0 …
    assert hist.hypergradient[t0] * hist.hypergradient[t0 - 1] < 0
    assert hist.beta[t0 - 1] + 100.0 * hist.hypergradient[t0] * hist.hypergradient[t0 - 1] < 0
    assert hist.lr[t0] == hist.lr[t0 - 1] > 0             # … and η stays where it was
    assert hist.hypergradient[t0] != 0


def test_learning_rate_is_clamped_at_zero_exactly():
    hist = _quadratic(kappa=None, beta=20.0, lr=1.5, steps=3)
    assert 0.0 in hist.lr and min(hist.lr) == 0.0
    t0 = hist.lr.index(0.0)
    assert hist.lr[t0 - 1] - 20.0 * hist.hypergradient[t0] < 0      # the unclamped value was negative


def test_adaptive_mu_c_is_clipped_to_one_and_to_zero():
    """c = clip(Δ_t / p_t, 0, 1): ratios above 1 give μ = 1 (not >1), below 0 give μ = 0."""
    dyn = hg.sgd(lambda p, b: 0.5 * ((p["x"] - 1) ** 2).sum())
    E = lambda p: 0.5 * ((p["x"] - 1) ** 2).sum()  # noqa: E731
    tuner = hg.Marthe(dyn, lr=0.5, beta=0.0, mu="auto")
    ostate = tuner.init({"x": torch.tensor([0.0], dtype=DT)})
    ratios, mus = [], []
    for _ in range(6):
        g = torch.func.grad(E)(ostate.state.w["params"])["x"]
        if ostate.t >= 1:
            delta, p = float(g @ ostate.Z["params"]["x"]), float(g @ ostate.B_prev["x"])
            ratios.append(delta / p)
        ostate, info = tuner.step(ostate, None, E)
        if ostate.t >= 2:
            mus.append(float(info.mu))
    assert max(ratios) > 1 and all(m <= 1.0 for m in mus) and 1.0 in mus
    # ... and a negative ratio: Z pointing against B_{t-1}
    ostate = ostate._replace(Z={"params": {"x": -10 * ostate.B_prev["x"]}})
    ostate, info = tuner.step(ostate, None, E)
    assert float(info.mu) == 0.0
