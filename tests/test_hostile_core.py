"""Issue 12 at the core: valid-but-unusual inputs work, bad inputs get an error naming the
argument, the value or the step (hypergradient, dynamics, the online fast path)."""

import pytest
import torch
from torch.func import functional_call

import hypergrad as hg
from hypergrad import _autodiff
from tests.helpers import DT, problem, rel_err

T = 5


def _two_layer(seed=0):
    """A net whose second layer can be left out of the objective or of the loss."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(8, 4, dtype=DT, generator=g), torch.randint(0, 3, (8,), generator=g))
               for _ in range(T)]
    xv, yv = torch.randn(20, 4, dtype=DT, generator=g), torch.randint(0, 3, (20,), generator=g)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    return net, params, batches, (xv, yv)


def _ce(net, p, batch):
    return torch.nn.functional.cross_entropy(functional_call(net, p, (batch[0],)), batch[1])


def _fd(dyn, params, lrs, batches, objective, h=1e-6):
    """Central finite differences of f_T(η) in float64."""
    out = torch.zeros_like(lrs)
    for t in range(len(lrs)):
        e = torch.zeros_like(lrs)
        e[t] = h
        fp = hg.hypergradient(dyn, params, lrs + e, batches, objective)[0]
        fm = hg.hypergradient(dyn, params, lrs - e, batches, objective)[0]
        out[t] = (fp - fm) / (2 * h)
    return out


# ----------------------------------------------------------------- 1. valid inputs that failed
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("opt", ["sgd", "sgd_momentum", "adam"])
def test_objective_using_only_the_last_layer(mode, opt):
    """E reads only the last layer's weight: the exact hypergradient (reverse == forward ==
    finite differences), the first layer contributing through the dynamics only."""
    net, params, batches, (xv, yv) = _two_layer()
    loss = lambda p, b: _ce(net, p, b)                                  # noqa: E731
    dyn = {"sgd": hg.sgd(loss), "sgd_momentum": hg.sgd(loss, momentum=0.9),
           "adam": hg.adam(loss)}[opt]
    objective = lambda p: (p["2.weight"] ** 2).sum() + p["2.bias"].sum()   # noqa: E731
    lrs = torch.full((T,), 0.05 if opt != "adam" else 0.01, dtype=DT)
    value, grad = hg.hypergradient(dyn, params, lrs, batches, objective, mode=mode)
    assert torch.isfinite(grad).all() and float(grad.abs().min()) > 0
    assert rel_err(grad, _fd(dyn, params, lrs, batches, objective)) < 1e-6


def test_objective_value_and_grad_materialises_zeros_for_unused_weights():
    net, params, batches, _ = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    state = dyn.init(params)
    value, g = hg.dynamics.objective_value_and_grad(lambda p: p["2.bias"].sum(), state)
    assert set(g) == set(params)
    assert all(torch.equal(g[k], torch.zeros_like(params[k])) for k in params if k != "2.bias")
    assert torch.equal(g["2.bias"], torch.ones(3, dtype=DT))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_training_loss_not_touching_a_parameter(mode):
    """A parameter the loss never reads ("extra") has gradient 0: it stays where it is, its
    hypergradient contribution is zero, and reverse == forward == finite differences."""
    net, params, batches, (xv, yv) = _two_layer()
    params = {**params, "extra": torch.randn(5, dtype=DT)}
    dyn = hg.sgd(lambda p, b: _ce(net, {k: v for k, v in p.items() if k != "extra"}, b), momentum=0.5)
    objective = lambda p: _ce(net, {k: v for k, v in p.items() if k != "extra"}, (xv, yv)) \
        + (p["extra"] ** 2).sum()                                         # noqa: E731
    lrs = torch.full((T,), 0.1, dtype=DT)
    _, grad = hg.hypergradient(dyn, params, lrs, batches, objective, mode=mode)
    assert rel_err(grad, _fd(dyn, params, lrs, batches, objective)) < 1e-6
    final, _ = hg.hypergradient.__globals__["unroll"](dyn, params, lrs, batches)
    assert torch.equal(final.w["params"]["extra"], params["extra"])


def test_linear_loss_has_a_zero_hessian_vector_product():
    """∇L constant (a linear loss): ∇²L v = 0, not autograd's "does not require grad"."""
    a = torch.tensor([1.0, -2.0, 3.0], dtype=DT)
    dyn = hg.sgd(lambda p, b: (a * p["w"]).sum() + (p["u"] ** 2).sum())
    theta = {"w": torch.ones(3, dtype=DT), "u": torch.ones(2, dtype=DT)}
    v = {"w": torch.ones(3, dtype=DT), "u": torch.ones(2, dtype=DT)}
    g, hv, _ = dyn.grad_and_hvp(theta, v, None, {"step": 0, "buffers": None})
    assert torch.equal(g["w"], a) and torch.equal(hv["w"], torch.zeros(3, dtype=DT))
    assert torch.equal(hv["u"], 2 * v["u"])


def test_online_marthe_with_a_partial_objective_equals_the_reference_jvp():
    """The online fast path (phi_jvp) with an objective and a loss using only part of the
    weights: Marthe runs, and its tangent equals the one torch.func.jvp of Φ_t."""
    net, params, batches, (xv, yv) = _two_layer(3)
    params = {**params, "extra": torch.randn(2, dtype=DT)}
    dyn = hg.sgd(lambda p, b: _ce(net, {k: v for k, v in p.items() if k != "extra"}, b), momentum=0.9)
    tuner = hg.Marthe(dyn, lr=0.1, beta=1e-3, mu=1.0)
    ostate = tuner.init(params)
    for b in batches:
        ostate, info = tuner.step(ostate, b, lambda p: (p["2.weight"] ** 2).sum())
        assert torch.isfinite(torch.as_tensor(info.hypergradient))
    assert torch.equal(ostate.state.w["params"]["extra"], params["extra"])
    st = ostate.state
    Z = ostate.Z
    fast = dyn.phi_jvp(st.w, torch.tensor(0.1, dtype=DT), batches[0], st.aux, Z)
    ref = hg.dynamics.phi_jvp_reference(dyn, st.w, torch.tensor(0.1, dtype=DT), batches[0], st.aux, Z)
    for slot in fast[1]:
        for k in fast[1][slot]:
            assert torch.allclose(fast[1][slot][k], ref[1][slot][k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("where", ["objective", "loss"])
def test_function_independent_of_the_weights_is_an_error_naming_it(where):
    """Decision: an objective or loss that does not depend on its weights at all is an error
    naming it (almost always a closure over the module's own parameters, whose hypergradient
    would silently be 0) — never autograd's "element 0 … does not require grad"."""
    net, params, batches, (xv, yv) = _two_layer()
    good_loss = lambda p, b: _ce(net, p, b)                              # noqa: E731
    bad_loss = lambda p, b: torch.nn.functional.cross_entropy(net(b[0]).detach(), b[1])  # noqa: E731
    good_obj = lambda p: _ce(net, p, (xv, yv))                           # noqa: E731
    bad_obj = lambda p: torch.tensor(1.0, dtype=DT)                      # noqa: E731
    dyn = hg.sgd(bad_loss if where == "loss" else good_loss)
    objective = bad_obj if where == "objective" else good_obj
    match = "objective does not depend" if where == "objective" else "training loss at step 0 does not depend"
    lrs = torch.full((T,), 0.1, dtype=DT)
    for mode in ("reverse", "forward"):
        with pytest.raises(ValueError, match=match):
            hg.hypergradient(dyn, params, lrs, batches, objective, mode=mode)
    with pytest.raises(ValueError, match=match):
        hg.Marthe(dyn, lr=0.1, beta=1e-3).step(hg.Marthe(dyn).init(params), batches[0], objective)


# ----------------------------------------------------------------- 2. silent wrong results
@pytest.mark.parametrize("lrs", [
    torch.full((T,), 0.1 + 0.01j),
    [0.1, 0.1, 0.1 + 1j, 0.1, 0.1],
    [0.1, 0.1, torch.tensor(0.1 + 0j), 0.1, 0.1],
])
def test_complex_schedule_is_rejected(lrs):
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    with pytest.raises(TypeError, match="complex"):
        hg.hypergradient(dyn, params, lrs, batches, lambda p: _ce(net, p, (xv, yv)))


@pytest.mark.parametrize("lr", [0.1 + 0.2j, torch.tensor(0.1 + 0j), "0.1", b"0.1", True,
                                torch.tensor(True), object()])
def test_step_rejects_non_real_learning_rates(lr):
    _, loss, params, batches, _ = problem(T=1)
    dyn = hg.sgd(loss)
    with pytest.raises(TypeError, match="learning rate"):
        dyn.step(dyn.init(params), lr, batches[0])


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("bad", ["nan_value", "inf_value", "nan_grad"])
def test_non_finite_objective_is_a_divergence_naming_the_step(mode, bad):
    """The same rule as Marthe.step: a non-finite E (or ∇E) raises DivergenceError at step T."""
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    if bad == "nan_value":
        objective = lambda p: _ce(net, p, (xv, yv)) * float("nan")      # noqa: E731
    elif bad == "inf_value":
        objective = lambda p: _ce(net, p, (xv, yv)) + float("inf")      # noqa: E731
    else:                                                                # finite value, NaN gradient
        objective = lambda p: torch.sqrt(p["2.bias"] - p["2.bias"]).sum() + 1.0   # noqa: E731
    lrs = torch.full((T,), 0.1, dtype=DT)
    with pytest.raises(hg.DivergenceError, match=f"step {T}") as err:
        hg.hypergradient(dyn, params, lrs, batches, objective, mode=mode)
    assert err.value.step == T and "objective" in str(err.value)


# ----------------------------------------------------------------- 4. errors a user can act on
def test_float64_batch_with_float32_weights_names_the_step_and_the_dtypes():
    net, params, batches, _ = _two_layer()
    net32 = net.float()
    p32 = {k: v.float() for k, v in params.items()}
    dyn = hg.sgd(lambda p, b: _ce(net32, p, b))
    with pytest.raises(RuntimeError, match=r"training loss at step 0.*float64 data but the weights are torch.float32"):
        hg.hypergradient(dyn, p32, [0.1] * T, batches, lambda p: p["2.bias"].sum())


def test_wrong_batch_at_step_t_names_the_step():
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    objective = lambda p: _ce(net, p, (xv, yv))                           # noqa: E731
    no_labels = list(batches)
    no_labels[3] = batches[3][0]                                         # inputs only
    with pytest.raises((ValueError, RuntimeError), match="training loss at step 3.*pair"):
        hg.hypergradient(dyn, params, [0.1] * T, no_labels, objective)
    wrong_shape = list(batches)
    wrong_shape[2] = (torch.randn(8, 5, dtype=DT), batches[2][1])        # 5 features, not 4
    with pytest.raises(RuntimeError, match="training loss at step 2"):
        hg.hypergradient(dyn, params, [0.1] * T, wrong_shape, objective)
    tuner = hg.Marthe(dyn, lr=0.1, beta=1e-3)
    ostate = tuner.init(params)
    for b in wrong_shape[:2]:
        ostate, _ = tuner.step(ostate, b, objective)
    with pytest.raises(RuntimeError, match="training loss at step 2"):
        tuner.step(ostate, wrong_shape[2], objective)


def test_objective_errors_are_named():
    net, params, batches, _ = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    xv = torch.randn(10, 4, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="objective at step 5 failed"):
        hg.hypergradient(dyn, params, [0.1] * T, batches,
                         lambda p: _ce(net, p, (xv, torch.zeros(10, dtype=torch.long))))
    with pytest.raises(ValueError, match="scalar"):                      # a non-scalar objective
        hg.hypergradient(dyn, params, [0.1] * T, batches, lambda p: p["2.bias"] * 2)
    with pytest.raises(ValueError, match="scalar"):                      # not a tensor at all
        hg.hypergradient(dyn, params, [0.1] * T, batches, lambda p: 1.0)


@pytest.mark.parametrize("loss,match", [
    (lambda p, b: p["w"] * 2, "training loss at step 0 must be a scalar"),
    (lambda p, b: 1.0, "training loss at step 0 must be a scalar"),
])
def test_bad_training_loss_values(loss, match):
    with pytest.raises(ValueError, match=match):
        hg.hypergradient(hg.sgd(loss), {"w": torch.ones(2, dtype=DT)}, [0.1] * 2, [None] * 2,
                         lambda p: p["w"].sum())


def test_buffered_loss_must_return_a_pair():
    dyn = hg.sgd(lambda p, b, bufs: (p["w"] ** 2).sum())
    state = dyn.init({"w": torch.ones(2, dtype=DT)}, {"m": torch.zeros(2, dtype=DT)})
    with pytest.raises(ValueError, match=r"\(scalar, new_buffers\)"):
        dyn.step(state, 0.1, None)


@pytest.mark.parametrize("params,exc,match", [
    ([torch.ones(2)], TypeError, "dict.*list.*named_parameters"),
    ((torch.ones(2),), TypeError, "dict.*tuple"),
    (torch.ones(2), TypeError, "bare tensor"),
    ({"w": [1.0, 2.0]}, TypeError, r"params\['w'\] must be a tensor"),
    ({"w": torch.ones(2, dtype=torch.long)}, TypeError, "real floating-point"),
    ({"w": torch.ones(2, dtype=torch.complex64)}, TypeError, "real floating-point"),
    ({"w": torch.ones(2, device="meta")}, ValueError, "'meta' device"),
    ({"w": torch.ones(2), "v": torch.ones(2, dtype=DT)}, ValueError, "mixes dtypes.*'w'.*'v'"),
    ({}, ValueError, "non-empty"),
])
def test_bad_params_are_named(params, exc, match):
    dyn = hg.sgd(lambda p, b: sum((x ** 2).sum() for x in p.values()))
    with pytest.raises(exc, match=match):
        dyn.init(params)
    with pytest.raises(exc, match=match):
        hg.hypergradient(dyn, params, [0.1], [None], lambda p: sum(x.sum() for x in p.values()))
    with pytest.raises(exc, match=match):
        hg.Marthe(dyn).init(params)


def test_bad_params_inside_a_given_state_are_named():
    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum())
    state = hg.State({"params": {"w": torch.ones(2, device="meta")}}, {"step": 0, "buffers": None})
    with pytest.raises(ValueError, match="state's params.*meta"):
        hg.hypergradient(dyn, state, [0.1], [None], lambda p: p["w"].sum())


@pytest.mark.parametrize("lrs,exc,match", [
    (torch.full((T,), 0.1, device="meta"), ValueError, "meta"),
    ("0.1", TypeError, "schedule"),
    ([0.1, "a", 0.1, 0.1, 0.1], TypeError, "step 1"),
    ([0.1, None, 0.1, 0.1, 0.1], TypeError, "step 1"),
    (torch.ones(T, dtype=torch.bool), TypeError, "bool"),
    (0.1, ValueError, "1-D"),
    ([[0.1] * T], ValueError, "1-D"),
    ([0.1] * T + [0.1], ValueError, "minibatches"),
    ([0.1, -1e-300, 0.1, 0.1, 0.1], ValueError, "step 1"),
    ([0.1, 0.1, 0.1, 0.1, float("inf")], ValueError, "step 4"),
])
def test_bad_schedules_are_named(lrs, exc, match):
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    with pytest.raises(exc, match=match):
        hg.hypergradient(dyn, params, lrs, batches, lambda p: _ce(net, p, (xv, yv)))


def test_schedule_as_a_list_of_tensors_or_ints_works():
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    obj = lambda p: _ce(net, p, (xv, yv))                                 # noqa: E731
    ref = hg.hypergradient(dyn, params, torch.full((T,), 0.0, dtype=DT), batches, obj)[1]
    assert torch.equal(hg.hypergradient(dyn, params, [0] * T, batches, obj)[1], ref)
    assert torch.equal(hg.hypergradient(dyn, params, [torch.tensor(0.0)] * T, batches, obj)[1], ref)


def test_schedule_given_as_python_floats_is_read_in_the_weights_dtype():
    """[0.1] * T is 0.1 in float64, not float32's 0.10000000149 (a silent rounding)."""
    net, params, batches, (xv, yv) = _two_layer()
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    obj = lambda p: _ce(net, p, (xv, yv))                                 # noqa: E731
    a = hg.hypergradient(dyn, params, [0.1] * T, batches, obj)
    b = hg.hypergradient(dyn, params, torch.full((T,), 0.1, dtype=DT), batches, obj)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_batches_must_be_a_sequence():
    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum())
    with pytest.raises(TypeError, match="batches"):
        hg.hypergradient(dyn, {"w": torch.ones(2, dtype=DT)}, [0.1], torch.ones(1, 2),
                         lambda p: p["w"].sum())
    with pytest.raises(TypeError, match="batches"):
        hg.hypergradient(dyn, {"w": torch.ones(2, dtype=DT)}, [0.1], 3, lambda p: p["w"].sum())


def test_errors_from_our_own_checks_are_not_wrapped_twice():
    """A DivergenceError from inside a loss passes through untouched; a ValueError is wrapped
    once with the step."""
    def loss(p, b):
        raise ValueError("boom")

    dyn = hg.sgd(loss)
    with pytest.raises(ValueError, match=r"^the training loss at step 0 failed.*: boom$"):
        dyn.step(dyn.init({"w": torch.ones(1, dtype=DT)}), 0.1, None)

    def loss2(p, b):
        raise hg.DivergenceError(7, "inner")

    dyn2 = hg.sgd(loss2)
    with pytest.raises(hg.DivergenceError, match="step 7"):
        dyn2.step(dyn2.init({"w": torch.ones(1, dtype=DT)}), 0.1, None)


def test_autodiff_vjp_with_an_output_independent_of_every_input_is_zero():
    out, pullback = _autodiff.vjp(lambda x: {"a": torch.ones(2)}, {"x": torch.ones(3)})
    (cot,) = pullback({"a": torch.ones(2)})
    assert torch.equal(cot["x"], torch.zeros(3))


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_edge_shapes_work(mode):
    """An empty parameter tensor, T = 0 (E(w_0) and an empty gradient), nn.Parameters passed
    directly and a NumPy schedule all work; a NumPy complex schedule is refused."""
    import numpy as np

    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum() + p["e"].sum())
    P = {"w": torch.ones(3, dtype=DT), "e": torch.empty(0, dtype=DT)}
    obj = lambda p: (p["w"] ** 3).sum()                                    # noqa: E731
    value, grad = hg.hypergradient(dyn, P, [0.1, 0.2], [None] * 2, obj, mode=mode)
    assert grad.shape == (2,) and torch.isfinite(grad).all()
    v0, g0 = hg.hypergradient(dyn, P, [], [], obj, mode=mode)
    assert float(v0) == 3.0 and g0.shape == (0,)
    assert torch.equal(hg.hypergradient(dyn, P, np.array([0.1, 0.2]), [None] * 2, obj, mode=mode)[1], grad)
    with pytest.raises(TypeError, match="complex"):
        hg.hypergradient(dyn, P, np.array([0.1, 0.2j]), [None] * 2, obj, mode=mode)
    lin = torch.nn.Linear(3, 1).double()
    x = torch.ones(2, 3, dtype=DT)
    dyn2 = hg.sgd(lambda p, b: (functional_call(lin, p, (x,)) ** 2).sum())
    a = hg.hypergradient(dyn2, dict(lin.named_parameters()), [0.1], [None], lambda p: p["bias"].sum(), mode=mode)
    b = hg.hypergradient(dyn2, {k: v.detach() for k, v in lin.named_parameters()}, [0.1], [None],
                         lambda p: p["bias"].sum(), mode=mode)
    assert torch.equal(a[1], b[1]) and lin.weight.grad is None


def test_meta_learning_rate_in_step_is_named():
    dyn = hg.sgd(lambda p, b: (p["w"] ** 2).sum())
    with pytest.raises(ValueError, match="learning rate is on the 'meta' device"):
        dyn.step(dyn.init({"w": torch.ones(2, dtype=DT)}), torch.tensor(0.1, device="meta"), None)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_non_finite_initial_weights_diverge_at_step_zero(mode):
    net, params, batches, (xv, yv) = _two_layer()
    params["0.bias"][1] = float("nan")
    dyn = hg.sgd(lambda p, b: _ce(net, p, b))
    with pytest.raises(hg.DivergenceError, match="step 0"):
        hg.hypergradient(dyn, params, [0.1] * T, batches, lambda p: _ce(net, p, (xv, yv)), mode=mode)
    tuner = hg.Marthe(dyn, lr=0.1, beta=1e-3)
    with pytest.raises(hg.DivergenceError, match="step 0"):
        tuner.step(tuner.init(params), batches[0], lambda p: _ce(net, p, (xv, yv)))
