"""Property-based hostile tests (hypothesis): random shapes, dtypes and schedules."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hypergrad as hg
from tests.helpers import DT

SETTINGS = dict(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)
param_dicts = st.dictionaries(st.sampled_from(["a", "b", "c", "w.x"]), shapes, min_size=1, max_size=3)


def _quartic(targets):
    """A smooth non-quadratic loss whose curvature depends on the weights (and on the step)."""
    def loss(p, b):
        s = b if b is not None else 1.0
        return sum(((x - s * targets[k]) ** 2).sum() + 0.1 * (x ** 4).sum() for k, x in p.items())
    return loss


def _init(shape_dict, seed, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(s, dtype=dtype, generator=g) for k, s in shape_dict.items()}
    targets = {k: torch.randn(s, dtype=dtype, generator=g) for k, s in shape_dict.items()}
    return params, targets


@settings(**SETTINGS)
@given(param_dicts, st.integers(0, 10**6),
       st.sampled_from(["sgd", "momentum", "nesterov", "adam", "adam_wd"]),
       st.lists(st.floats(0.0, 0.2), min_size=1, max_size=4))
def test_step_equals_torch_optim(shape_dict, seed, opt, lrs):
    params, targets = _init(shape_dict, seed)
    loss = _quartic(targets)
    dyn, ref_cls, kw = {
        "sgd": (hg.sgd(loss, weight_decay=0.01), torch.optim.SGD, dict(weight_decay=0.01)),
        "momentum": (hg.sgd(loss, momentum=0.9), torch.optim.SGD, dict(momentum=0.9)),
        "nesterov": (hg.sgd(loss, momentum=0.5, nesterov=True), torch.optim.SGD,
                     dict(momentum=0.5, nesterov=True)),
        "adam": (hg.adam(loss), torch.optim.Adam, {}),
        "adam_wd": (hg.adam(loss, betas=(0.5, 0.9), weight_decay=0.1), torch.optim.Adam,
                    dict(betas=(0.5, 0.9), weight_decay=0.1)),
    }[opt]
    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    optim = ref_cls(list(ref.values()), lr=0.1, **kw)
    state = dyn.init(params)
    for lr in lrs:
        state = dyn.step(state, lr, None)
        optim.param_groups[0]["lr"] = lr
        optim.zero_grad()
        loss(ref, None).backward()
        optim.step()
    for k in params:
        assert state.w["params"][k].dtype == DT and state.w["params"][k].shape == params[k].shape
        assert torch.allclose(state.w["params"][k], ref[k].detach(), rtol=1e-12, atol=1e-13)


@settings(**SETTINGS)
@given(param_dicts, st.integers(0, 10**6), st.sampled_from(["sgd", "momentum", "adam"]),
       st.lists(st.floats(0.0, 0.3), min_size=1, max_size=4))
def test_forward_equals_reverse_on_random_schedules(shape_dict, seed, opt, lrs):
    params, targets = _init(shape_dict, seed)
    loss = _quartic(targets)
    dyn = {"sgd": hg.sgd(loss), "momentum": hg.sgd(loss, momentum=0.9),
           "adam": hg.adam(loss)}[opt]
    batches = [1.0 + 0.1 * t for t in range(len(lrs))]
    key = sorted(params)[0]
    objective = lambda p: (p[key] ** 3).sum() + sum((x ** 2).sum() for x in p.values())  # noqa: E731
    lrs_t = torch.tensor(lrs, dtype=DT)
    v_r, g_r = hg.hypergradient(dyn, params, lrs_t, batches, objective)
    v_f, g_f = hg.hypergradient(dyn, params, lrs_t, batches, objective, mode="forward")
    assert torch.equal(v_r, v_f)
    scale = max(float(g_f.abs().max()), 1e-300)
    assert float((g_r - g_f).abs().max()) <= 1e-10 * scale + 1e-14


@settings(**SETTINGS)
@given(param_dicts, st.integers(0, 10**6), st.sampled_from([torch.float32, torch.float64]),
       st.lists(st.floats(0.0, 0.2), min_size=1, max_size=3))
def test_dtypes_are_kept(shape_dict, seed, dtype, lrs):
    """The state keeps the weights' dtype; the schedule is read in it; the hypergradient too."""
    params, targets = _init(shape_dict, seed, dtype)
    dyn = hg.sgd(_quartic(targets), momentum=0.5)
    value, grad = hg.hypergradient(dyn, params, lrs, [None] * len(lrs),
                                   lambda p: sum((x ** 2).sum() for x in p.values()))
    assert value.dtype == dtype and grad.dtype == dtype and grad.shape == (len(lrs),)


bad_value = st.sampled_from([math.nan, math.inf, -math.inf, -1e-3, -1.0, -1e-300])


@settings(**SETTINGS)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), bad_value, st.data())
def test_invalid_schedules_always_raise_with_a_message(good, bad, data):
    T = len(good)
    where = data.draw(st.integers(0, T - 1))
    lrs = list(good)
    lrs[where] = bad
    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum())
    with pytest.raises(ValueError, match=f"step {where}"):
        hg.hypergradient(dyn, {"w": torch.ones(2, dtype=DT)}, lrs, [None] * T, lambda p: p["w"].sum())
    with pytest.raises(ValueError, match="minibatches"):              # wrong length
        hg.hypergradient(dyn, {"w": torch.ones(2, dtype=DT)}, good, [None] * (T + 1),
                         lambda p: p["w"].sum())


@settings(**SETTINGS)
@given(st.one_of(st.complex_numbers(allow_nan=False, allow_infinity=False).filter(lambda z: z.imag != 0),
                 st.text(max_size=5), st.booleans()))
def test_non_real_learning_rates_always_raise(lr):
    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum())
    state = dyn.init({"w": torch.ones(2, dtype=DT)})
    with pytest.raises(TypeError, match="learning rate"):
        dyn.step(state, lr, None)
    with pytest.raises(TypeError, match="schedule"):
        hg.hypergradient(dyn, state, [lr], [None], lambda p: p["w"].sum())


@settings(**SETTINGS)
@given(param_dicts, st.integers(0, 10**6), st.data())
def test_partial_objective_has_zero_gradient_on_unused_weights(shape_dict, seed, data):
    params, targets = _init(shape_dict, seed)
    used = data.draw(st.sets(st.sampled_from(sorted(params)), min_size=1))
    dyn = hg.sgd(_quartic(targets))
    _, g = hg.dynamics.objective_value_and_grad(
        lambda p: sum((p[k] ** 2).sum() for k in used) + 0.0 * 1, dyn.init(params))
    for k in params:
        expect = 2 * params[k] if k in used else torch.zeros_like(params[k])
        assert torch.allclose(g[k], expect, rtol=1e-14, atol=0)
