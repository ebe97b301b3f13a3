"""The exact hypergradient (Eq. 2–4): reverse == forward == finite differences == closed form."""

import pytest
import torch

import hypergrad as hg
from hypergrad.hypergradient import _reverse, check_schedule
from tests.helpers import DT, problem, rel_err

T = 10
DYNAMICS = {
    "sgd": (lambda loss: hg.sgd(loss), 0.3),
    "momentum": (lambda loss: hg.sgd(loss, momentum=0.9, weight_decay=1e-2), 0.1),
    "adam": (lambda loss: hg.adam(loss, weight_decay=1e-3), 0.02),
}


def _setup(name):
    _, loss, params, batches, objective = problem(T=T)
    make, lr = DYNAMICS[name]
    lrs = lr * torch.linspace(1.0, 0.4, T, dtype=DT)
    return make(loss), params, lrs, batches[:T], objective


def _hypergradient(dyn, params, lrs, batches, objective, engine="autograd", checkpoint_every=None):
    """Reverse mode with the default replay (``autograd``) or the torch.func reference (``func``)."""
    if engine == "autograd":
        return hg.hypergradient(dyn, params, lrs, batches, objective, checkpoint_every=checkpoint_every)
    state = params if isinstance(params, hg.State) else dyn.init(params)
    lrs = check_schedule(lrs, like=next(iter(state.w["params"].values())), length=len(batches))
    return _reverse(dyn, state, lrs, list(batches), objective, checkpoint_every, vjp=torch.func.vjp)


def central_differences(dyn, params, lrs, batches, objective, h=1e-6):
    fd = torch.zeros_like(lrs)
    for t in range(len(lrs)):
        e = torch.zeros_like(lrs)
        e[t] = h
        plus = hg.hypergradient(dyn, params, lrs + e, batches, objective)[0]
        minus = hg.hypergradient(dyn, params, lrs - e, batches, objective)[0]
        fd[t] = (plus - minus) / (2 * h)
    return fd


@pytest.mark.parametrize("name", list(DYNAMICS))
def test_reverse_equals_forward_equals_finite_differences(name):
    dyn, params, lrs, batches, objective = _setup(name)
    v_rev, g_rev = hg.hypergradient(dyn, params, lrs, batches, objective, mode="reverse")
    v_fwd, g_fwd = hg.hypergradient(dyn, params, lrs, batches, objective, mode="forward")
    assert float(v_rev) == float(v_fwd)
    assert rel_err(g_rev, g_fwd) < 1e-10
    fd = central_differences(dyn, params, lrs, batches, objective)
    assert rel_err(g_rev, fd) < 1e-6
    assert torch.allclose(g_rev, fd, rtol=1e-5, atol=1e-9)   # entrywise too
    assert (g_rev.abs() > 1e-6).all()                       # not a vacuous comparison


@pytest.mark.parametrize("engine", ["autograd", "func"])
@pytest.mark.parametrize("name", list(DYNAMICS))
@pytest.mark.parametrize("k", [1, 3, T, None])
def test_checkpoint_segments_and_engines_do_not_change_the_result(k, name, engine):
    dyn, params, lrs, batches, objective = _setup(name)
    ref = hg.hypergradient(dyn, params, lrs, batches, objective, mode="forward")[1]
    got = _hypergradient(dyn, params, lrs, batches, objective, engine, checkpoint_every=k)[1]
    assert rel_err(got, ref) < 1e-12


def test_quadratic_closed_form():
    """E = L = ½wᵀQw with SGD: ∂f_T/∂η_t = −∇E(w_T)ᵀ Π_{s>t}(I − η_s Q) Q w_t."""
    g = torch.Generator().manual_seed(0)
    d, T_ = 6, 12
    M = torch.randn(d, d, dtype=DT, generator=g)
    Q = M @ M.T / d + 0.1 * torch.eye(d, dtype=DT)
    w0 = {"w": torch.randn(d, dtype=DT, generator=g)}

    def loss(p, batch):
        return 0.5 * p["w"] @ Q @ p["w"]

    lrs = torch.rand(T_, dtype=DT, generator=g) * 0.5
    dyn = hg.sgd(loss)
    ws = [w0["w"]]
    for t in range(T_):
        ws.append(ws[-1] - lrs[t] * Q @ ws[-1])
    gE = Q @ ws[-1]
    closed = torch.zeros(T_, dtype=DT)
    for t in range(T_):
        v = Q @ ws[t]
        for s in range(t + 1, T_):
            v = v - lrs[s] * Q @ v
        closed[t] = -gE @ v
    for mode in ("reverse", "forward"):
        value, grad = hg.hypergradient(dyn, w0, lrs, [None] * T_, lambda p: loss(p, None), mode=mode)
        assert rel_err(grad, closed) < 1e-12
        assert abs(float(value) - float(0.5 * ws[-1] @ Q @ ws[-1])) < 1e-14


def test_depends_only_on_the_future():
    """Eq. 4: given w_t, ∂f_T/∂η_t does not depend on η_s, s < t (nor on batches before t)."""
    dyn, params, lrs, batches, objective = _setup("sgd")
    t0 = 4
    state = dyn.init(params)
    for s in range(t0):
        state = dyn.step(state, lrs[s], batches[s])
    tail = hg.hypergradient(dyn, state, lrs[t0:], batches[t0:], objective)[1]
    full = hg.hypergradient(dyn, params, lrs, batches, objective)[1]
    assert rel_err(full[t0:], tail) < 1e-12


def test_stateful_start_and_buffers_are_accepted():
    dyn, params, lrs, batches, objective = _setup("adam")
    state = dyn.init(params)
    a = hg.hypergradient(dyn, state, lrs, batches, objective)[1]
    b = hg.hypergradient(dyn, params, lrs, batches, objective)[1]
    assert torch.equal(a, b)


@pytest.mark.parametrize("lrs,match", [
    (torch.full((T - 1,), 0.1, dtype=DT), "minibatches"),
    (torch.full((T, 1), 0.1, dtype=DT), "1-D"),
    (torch.tensor([0.1] * (T - 1) + [-0.1], dtype=DT), "step 9"),
    (torch.tensor([0.1] * 3 + [float("nan")] + [0.1] * (T - 4), dtype=DT), "non-finite.*step 3"),
])
def test_bad_schedules(lrs, match):
    dyn, params, _, batches, objective = _setup("sgd")
    with pytest.raises(ValueError, match=match):
        hg.hypergradient(dyn, params, lrs, batches, objective)


def test_non_scalar_objective_and_bad_mode():
    dyn, params, lrs, batches, objective = _setup("sgd")
    with pytest.raises(ValueError, match="scalar"):
        hg.hypergradient(dyn, params, lrs, batches, lambda p: p["0.weight"].sum(0))
    with pytest.raises(ValueError, match="mode"):
        hg.hypergradient(dyn, params, lrs, batches, objective, mode="sideways")
    with pytest.raises(TypeError, match="engine"):
        hg.hypergradient(dyn, params, lrs, batches, objective, engine="func")   # not public


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_divergence_names_the_step(mode):
    dyn = hg.sgd(lambda p, b: 0.5 * (p["w"] ** 2).sum())
    lrs = torch.full((T,), 0.1, dtype=DT)
    lrs[3] = 1e200                      # w_4 ≈ -1e200: the loss at step 4 overflows
    with pytest.raises(hg.DivergenceError) as err:
        hg.hypergradient(dyn, {"w": torch.ones(3, dtype=DT)}, lrs, [None] * T,
                         lambda p: (p["w"] ** 2).sum(), mode=mode)
    assert err.value.step == 4 and "step 4" in str(err.value)


@pytest.mark.parametrize("engine", ["autograd", "func"])
def test_batchnorm_model_reverse_equals_forward(engine):
    from tests.helpers import tiny_mlp

    net = tiny_mlp(7, batchnorm=True)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 5, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g))
               for _ in range(6)]
    xv, yv = torch.randn(30, 5, dtype=DT, generator=g), torch.randint(0, 3, (30,), generator=g)

    def loss(params, batch, buffers):
        bufs = {k: v.clone() for k, v in buffers.items()}
        net.train()
        out = torch.func.functional_call(net, (params, bufs), (batch[0],))
        return torch.nn.functional.cross_entropy(out, batch[1]), bufs

    def objective(params, buffers):                  # eval mode: the trajectory's running stats
        net.eval()
        return torch.nn.functional.cross_entropy(
            torch.func.functional_call(net, (params, buffers), (xv,)), yv)

    dyn = hg.sgd(loss, momentum=0.9)
    state = dyn.init({k: v.detach() for k, v in net.named_parameters()},
                     {k: v.detach() for k, v in net.named_buffers()})
    lrs = torch.full((6,), 0.1, dtype=DT)
    rev = _hypergradient(dyn, state, lrs, batches, objective, engine, checkpoint_every=2)[1]
    fwd = hg.hypergradient(dyn, state, lrs, batches, objective, mode="forward")[1]
    assert rel_err(rev, fwd) < 1e-10 and float(fwd.abs().min()) > 0
