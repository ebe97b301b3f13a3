"""Each dynamics equals torch.optim's trajectory (20 steps, float64, 1e-10)."""

import pytest
import torch
from torch.func import jvp

import hypergrad as hg
from hypergrad import _autodiff
from hypergrad.dynamics import phi_jvp_reference
from tests.helpers import DT, max_diff, problem, tiny_mlp

CASES = [
    ("sgd", lambda loss: hg.sgd(loss), lambda ps: torch.optim.SGD(ps, lr=0.2), 0.2),
    ("momentum+wd", lambda loss: hg.sgd(loss, momentum=0.9, weight_decay=5e-3),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-3), 0.1),
    ("nesterov", lambda loss: hg.sgd(loss, momentum=0.8, nesterov=True),
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True), 0.1),
    ("adam", lambda loss: hg.adam(loss), lambda ps: torch.optim.Adam(ps, lr=0.01), 0.01),
    ("adam+wd", lambda loss: hg.adam(loss, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
     lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2), 0.02),
]


@pytest.mark.parametrize("name,make,make_opt,lr", CASES, ids=[c[0] for c in CASES])
def test_trajectory_equals_torch_optim(name, make, make_opt, lr):
    net, loss, params, batches, _ = problem(T=20)
    dyn = make(loss)
    state = dyn.init(params)
    for t in range(20):
        state = dyn.step(state, lr, batches[t])
    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = make_opt(list(ref.values()))
    for t in range(20):
        opt.zero_grad()
        loss(ref, batches[t]).backward()
        opt.step()
    assert max_diff(dyn.params(state), ref) < 1e-10
    assert max_diff(params, {k: v.detach() for k, v in net.named_parameters()}) == 0  # no mutation
    assert state.aux["step"] == 20


def test_varying_learning_rates_equal_torch_optim():
    _, loss, params, batches, _ = problem(T=8)
    lrs = torch.linspace(0.3, 0.0, 8, dtype=DT)
    dyn = hg.sgd(loss, momentum=0.5)
    state = dyn.init(params)
    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.SGD(list(ref.values()), lr=0.3, momentum=0.5)
    for t in range(8):
        state = dyn.step(state, lrs[t], batches[t])
        opt.param_groups[0]["lr"] = float(lrs[t])
        opt.zero_grad()
        loss(ref, batches[t]).backward()
        opt.step()
    assert max_diff(dyn.params(state), ref) < 1e-12


def test_batchnorm_buffers_follow_the_module():
    """Buffers are carried in state.aux and updated exactly as a train-mode forward does."""
    net = tiny_mlp(3, batchnorm=True)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 5, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g))
               for _ in range(5)]

    def loss(params, batch, buffers):
        bufs = {k: v.clone() for k, v in buffers.items()}
        out = torch.func.functional_call(net, {**params, **bufs}, (batch[0],))
        return torch.nn.functional.cross_entropy(out, batch[1]), bufs

    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in net.named_buffers()}
    dyn = hg.sgd(loss, momentum=0.9)
    state = dyn.init(params, buffers)
    for b in batches:
        state = dyn.step(state, 0.1, b)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert max_diff(dyn.params(state), dict(net.named_parameters())) < 1e-12
    bufs = state.aux["buffers"]
    assert max_diff(bufs, dict(net.named_buffers())) < 1e-12
    assert int(bufs["1.num_batches_tracked"]) == 5
    # the tangent of a BN model is computable and buffers are not differentiated
    tangent = {k: {n: torch.ones_like(x) for n, x in v.items()} for k, v in state.w.items()}
    out, dout = jvp(lambda w: dyn.phi(w, torch.tensor(0.1, dtype=DT), batches[0], state.aux)[0],
                    (state.w,), (tangent,))
    assert all(torch.isfinite(x).all() for v in dout.values() for x in v.values())


def test_adam_tangent_is_finite_where_gradients_vanish():
    """A weight whose gradient is always exactly 0 (a blank input pixel) keeps a finite tangent."""
    _, loss, params, batches, objective = problem(T=6)
    batches = [(x.clone(), y) for x, y in batches[:6]]
    for x, _ in batches:
        x[:, 0] = 0.0                           # input feature 0 is always blank
    dyn = hg.adam(loss)
    value, grad = hg.hypergradient(dyn, params, torch.full((6,), 0.01, dtype=DT), batches, objective)
    assert torch.isfinite(grad).all()
    _, grad_f = hg.hypergradient(dyn, params, torch.full((6,), 0.01, dtype=DT), batches, objective,
                                 mode="forward")
    assert torch.allclose(grad, grad_f, rtol=1e-10, atol=0)


def test_lr_derivative_is_B():
    """dyn.lr_derivative is ∂Φ/∂η, checked against a jvp of the whole Φ along η."""
    _, loss, params, batches, _ = problem(T=3)
    for dyn in (hg.sgd(loss, momentum=0.9, weight_decay=1e-2), hg.adam(loss, weight_decay=1e-2)):
        state = dyn.init(params)
        state = dyn.step(state, 0.05, batches[0])
        lr = torch.tensor(0.05, dtype=DT)
        _, B = jvp(lambda lr_, d=dyn, s=state: d.phi(s.w, lr_, batches[1], s.aux)[0], (lr,),
                   (torch.ones_like(lr),))
        g, _ = dyn.grad(state.w["params"], batches[1], state.aux)
        B2 = dyn.lr_derivative(state.w, g, lr, state.aux["step"])
        for k in B:
            assert max_diff(B[k], B2[k]) < 1e-14


def test_hvp_equals_forward_over_reverse():
    """Double backward (the library's one HVP) == torch.func's jvp of grad (the reference)."""
    _, loss, params, batches, _ = problem(T=2)
    dyn = hg.sgd(loss)
    state = dyn.init(params)
    v = {k: torch.randn_like(x) for k, x in params.items()}
    g1, h1, (l1, _) = jvp(lambda th: dyn.grad(th, batches[0], state.aux), (params,), (v,),
                          has_aux=True)
    g2, h2, (l2, _) = dyn.grad_and_hvp(params, v, batches[0], state.aux)
    assert max_diff(g1, g2) < 1e-14 and max_diff(h1, h2) < 1e-12 and float(l1) == float(l2)
    g3, _ = torch.func.grad(lambda th: loss(th, batches[0]))(params), None
    assert max_diff(g3, g2) < 1e-14
    with pytest.raises(ValueError, match="rev"):
        dyn.grad_and_hvp(params, v, batches[0], state.aux, "fwd")


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("make", [lambda l: hg.sgd(l), lambda l: hg.sgd(l, momentum=0.9, weight_decay=1e-2),
                                  lambda l: hg.adam(l, weight_decay=1e-2)], ids=["sgd", "momentum", "adam"])
def test_phi_jvp_equals_one_torch_func_jvp_of_phi(make, zero):
    """Step 4's fast path (gradient + HVP, then the update's tangent) == jvp(Φ, (w, η), (ẇ, 1))."""
    _, loss, params, batches, _ = problem(T=3)
    dyn = make(loss)
    state = dyn.step(dyn.init(params), 0.05, batches[0])
    dw = None if zero else {s: {k: torch.randn_like(v) for k, v in d.items()} for s, d in state.w.items()}
    lr = torch.tensor(0.05, dtype=DT)
    fast = dyn.phi_jvp(state.w, lr, batches[1], state.aux, dw)
    ref = phi_jvp_reference(dyn, state.w, lr, batches[1], state.aux, dw)
    for a, b in zip(fast[:3], ref[:3], strict=True):
        for s in b:
            scale = max(1.0, max(float(v.abs().max()) for v in b[s].values()))
            assert max_diff(a[s], b[s]) < 1e-13 * scale      # relative, in float64
    assert float(fast[3][0]) == float(ref[3][0])
    # without B: the same weights and tangent, bit for bit; B left out only where a tangent
    # was given (with none, B is the tangent) and only by SGD's hand-written update_jvp
    lean = dyn.phi_jvp(state.w, lr, batches[1], state.aux, dw, need_B=False)
    for a, b in ((lean[0], fast[0]), (lean[1], fast[1])):
        assert all(torch.equal(a[s][k], b[s][k]) for s in b for k in b[s])
    assert (lean[2] is None) == (not zero and dyn.name.startswith("sgd"))
    if lean[2] is not None:
        assert all(torch.equal(lean[2][s][k], fast[2][s][k]) for s in fast[2] for k in fast[2][s])


def test_gradient_under_autograd_keeps_its_graph():
    """value_and_grad inside an autograd vjp gives the same products as torch.func.vjp."""
    _, loss, params, batches, _ = problem(T=2)
    dyn = hg.sgd(loss, momentum=0.9)
    state = dyn.step(dyn.init(params), 0.1, batches[0])
    lr = torch.tensor(0.1, dtype=DT)
    p = {s: {k: torch.randn_like(v) for k, v in d.items()} for s, d in state.w.items()}
    outs = []
    for vjp in (_autodiff.vjp, torch.func.vjp):
        w1, pullback, _ = vjp(lambda w, lr_: dyn.phi(w, lr_, batches[1], state.aux), state.w, lr,
                              has_aux=True)
        outs.append((w1, *pullback(p)))
    (wa, pa, la), (wb, pb, lb) = outs
    for s in wa:
        assert max_diff(wa[s], wb[s]) == 0 and max_diff(pa[s], pb[s]) < 1e-13
    assert abs(float(la - lb)) < 1e-13 and float(la) != 0


@pytest.mark.parametrize("kw", [dict(momentum=-0.1), dict(weight_decay=float("nan")),
                                dict(nesterov=True)])
def test_sgd_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        hg.sgd(lambda p, b: 0, **kw)


@pytest.mark.parametrize("kw", [dict(betas=(1.0, 0.9)), dict(eps=-1.0), dict(weight_decay=-1.0)])
def test_adam_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        hg.adam(lambda p, b: 0, **kw)


def test_bad_lr_and_params():
    _, loss, params, batches, _ = problem(T=1)
    dyn = hg.sgd(loss)
    with pytest.raises(ValueError, match="non-empty"):
        dyn.init({})
    with pytest.raises(ValueError, match="scalar"):
        dyn.step(dyn.init(params), torch.ones(2), batches[0])


def test_step_rejects_bad_learning_rates():
    _, loss, params, batches, _ = problem(T=1)
    dyn = hg.sgd(loss)
    state = dyn.init(params)
    for bad in (-0.1, float("nan"), float("inf"), torch.tensor(-1.0, dtype=DT)):
        with pytest.raises(ValueError, match="finite and >= 0"):
            dyn.step(state, bad, batches[0])


def test_empty_buffers_mean_no_buffers():
    _, loss, params, batches, _ = problem(T=1)
    dyn = hg.sgd(loss)
    state = dyn.init(params, {})
    assert state.aux["buffers"] is None
    dyn.step(state, 0.1, batches[0])        # the loss is called as loss(params, batch)


def test_step_composes_with_torch_func_over_the_learning_rate():
    """The learning-rate check is skipped inside transforms: jacfwd through two steps works."""
    dyn = hg.sgd(lambda p, b: 0.5 * (p["x"] ** 2).sum())
    state = dyn.init({"x": torch.ones(3, dtype=DT)})

    def two_steps(lr):
        return dyn.step(dyn.step(state, lr, None), lr, None).w["params"]["x"]

    d = torch.func.jacfwd(two_steps)(torch.tensor(0.1, dtype=DT))
    assert torch.allclose(d, torch.full((3,), -2 * (1 - 0.1), dtype=DT), rtol=1e-14)


@pytest.mark.parametrize("make", [lambda l: hg.sgd(l, momentum=0.9, weight_decay=1e-2),
                                  lambda l: hg.adam(l, weight_decay=1e-2)])
def test_jvp_eager_equals_torch_func_jvp(make):
    _, loss, params, batches, _ = problem(T=2)
    dyn = make(loss)
    state = dyn.step(dyn.init(params), 0.05, batches[0])
    g, _ = dyn.grad(state.w["params"], batches[1], state.aux)
    g2 = {k: torch.randn_like(v) for k, v in g.items()}
    Z = {s: {k: torch.randn_like(v) for k, v in d.items()} for s, d in state.w.items()}
    lr = torch.tensor(0.05, dtype=DT)
    args = ((state.w, g, lr), (Z, g2, torch.ones_like(lr)))
    f = lambda w, g_, lr_: dyn.update(w, g_, lr_, 1)  # noqa: E731
    p1, t1 = torch.func.jvp(f, *args)
    p2, t2 = _autodiff.jvp_eager(f, *args)
    for s in t1:
        assert max_diff(p1[s], p2[s]) == 0 and max_diff(t1[s], t2[s]) < 1e-15
    _, B = _autodiff.jvp_eager(lambda lr_: dyn.update(state.w, g, lr_, 1), (lr,), (torch.ones_like(lr),))
    assert all(float(v.abs().max()) == 0 for s in B if s != "params" for v in B[s].values())


@pytest.mark.parametrize("make", [
    lambda l: hg.sgd(l), lambda l: hg.sgd(l, weight_decay=1e-2),
    lambda l: hg.sgd(l, momentum=0.9, weight_decay=1e-2),
    lambda l: hg.sgd(l, momentum=0.8, nesterov=True), lambda l: hg.adam(l),
    lambda l: hg.adam(l, weight_decay=1e-2)], ids=["sgd", "sgd+wd", "momentum+wd", "nesterov",
                                                   "adam", "adam+wd"])
@pytest.mark.parametrize("zero", [False, True])
def test_hand_written_update_tangent_equals_autodiff(make, zero):
    """The specialised update_jvp (fast path) equals forward-mode AD of the update."""
    _, loss, params, batches, _ = problem(T=3)
    dyn = make(loss)
    state = dyn.step(dyn.step(dyn.init(params), 0.05, batches[0]), 0.05, batches[1])
    g, _ = dyn.grad(state.w["params"], batches[2], state.aux)
    for x in g.values():
        x.view(-1)[:2] = 0.0                 # exact zeros, where Adam's √v has no derivative
    dw = None if zero else {s: {k: torch.randn_like(v) for k, v in d.items()} for s, d in state.w.items()}
    dg = None if zero else {k: torch.randn_like(v) for k, v in g.items()}
    lr = torch.tensor(0.05, dtype=DT)
    hand = dyn.update_tangent(state.w, g, lr, 2, dw, dg)
    auto = _autodiff.update_jvp(dyn.update, state.w, g, lr, 2, dw, dg)
    for a, b in zip(hand, auto, strict=True):
        for s in b:
            scale = max(1.0, max(float(v.abs().max()) for v in b[s].values()))
            assert max_diff(a[s], b[s]) < 1e-14 * scale      # relative, in float64


@pytest.mark.parametrize("make", [
    lambda l: hg.sgd(l, weight_decay=1e-2), lambda l: hg.sgd(l, momentum=0.9, weight_decay=1e-2),
    lambda l: hg.sgd(l, momentum=0.8, nesterov=True), lambda l: hg.adam(l, weight_decay=1e-2)],
    ids=["sgd+wd", "momentum+wd", "nesterov", "adam+wd"])
def test_update_tangent_without_the_lr_term_and_batched(make):
    """``with_lr=False`` is the tangent minus ``B`` (hand-written = autodiff), and tangents
    with a leading batch dimension give each direction's own tangent."""
    _, loss, params, batches, _ = problem(T=3)
    dyn = make(loss)
    state = dyn.step(dyn.step(dyn.init(params), 0.05, batches[0]), 0.05, batches[1])
    g, _ = dyn.grad(state.w["params"], batches[2], state.aux)
    lr = torch.tensor(0.05, dtype=DT)
    dirs = [({s: {k: torch.randn_like(v) for k, v in d.items()} for s, d in state.w.items()},
             {k: torch.randn_like(v) for k, v in g.items()}) for _ in range(3)]
    stack = lambda *ts: {k: (stack(*(t[k] for t in ts)) if isinstance(ts[0][k], dict)  # noqa: E731
                             else torch.stack([t[k] for t in ts])) for k in ts[0]}
    dw_b, dg_b = stack(*(d[0] for d in dirs)), stack(*(d[1] for d in dirs))
    for fn in (dyn.update_tangent,
               lambda *a, **k: _autodiff.update_jvp(dyn.update, *a, **k)):
        _, batched, _ = fn(state.w, g, lr, 2, dw_b, dg_b, with_lr=False)
        for i, (dw, dg) in enumerate(dirs):
            _, with_b, B = dyn.update_tangent(state.w, g, lr, 2, dw, dg)
            for s in B:
                want = {k: with_b[s][k] - B[s][k] for k in B[s]}
                got = {k: batched[s][k][i] for k in B[s]}
                scale = max(1.0, max(float(v.abs().max()) for v in with_b[s].values()))
                assert max_diff(got, want) < 1e-13 * scale
        _, zero_tan, _ = fn(state.w, g, lr, 2, None, None, with_lr=False)
        assert all(float(v.abs().max()) == 0 for d in zero_tan.values() for v in d.values())


def test_make_dynamics_by_name():
    loss = lambda p, b: (p["x"] ** 2).sum()  # noqa: E731
    assert hg.make_dynamics("sgd", loss, momentum=0.9).hyperparams["momentum"] == 0.9
    assert hg.make_dynamics("adam", loss, momentum=0.0).name == "adam"
    with pytest.raises(ValueError, match="optimizer"):
        hg.make_dynamics("lbfgs", loss)
    with pytest.raises(ValueError, match="betas"):
        hg.make_dynamics("sgd", loss, betas=(0.9, 0.99))
