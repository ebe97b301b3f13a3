"""HD, RTHO and MARTHE (Algorithm 1): one algorithm, checked against independent computations."""

import io
import math

import pytest
import torch
from torch.func import grad, jvp

import hypergrad as hg
from tests.helpers import DT, max_diff, problem

T = 12
DYNAMICS = {
    "sgd": (lambda loss: hg.sgd(loss), 0.3),
    "momentum": (lambda loss: hg.sgd(loss, momentum=0.9, weight_decay=1e-2), 0.1),
    "adam": (lambda loss: hg.adam(loss, weight_decay=1e-3), 0.02),
}


def _setup(name, T_=T):
    _, loss, params, batches, objective = problem(T=T_)
    make, lr = DYNAMICS[name]
    return make(loss), lr, params, batches, objective, loss


def _run(tuner, params, batches, objective, steps):
    ostate = tuner.init(params)
    infos = []
    for t in range(steps):
        ostate, info = tuner.step(ostate, batches[t], objective)
        infos.append(info)
    return ostate, infos


@pytest.mark.parametrize("name", list(DYNAMICS))
def test_rtho_tangent_is_the_derivative_along_a_constant_schedule(name):
    """β = 0, μ = 1: Z_T = d w_T / dη along η_t ≡ η (jvp through the unroll, and finite diffs)."""
    dyn, lr, params, batches, objective, _ = _setup(name)
    ostate, _ = _run(hg.RTHO(dyn, lr=lr, beta=0.0), params, batches, objective, T)

    def w_T(eta):
        state = dyn.init(params)
        for t in range(T):
            state = dyn.step(state, eta, batches[t])
        return state.w

    eta = torch.tensor(lr, dtype=DT)
    _, dw = jvp(w_T, (eta,), (torch.ones_like(eta),))
    for slot in dw:
        assert max_diff(ostate.Z[slot], dw[slot]) < 1e-10
    h = 1e-6
    plus, minus = w_T(eta + h), w_T(eta - h)
    fd = {k: (plus["params"][k] - minus["params"][k]) / (2 * h) for k in params}
    scale = max(float(v.abs().max()) for v in fd.values())
    assert max_diff(ostate.Z["params"], fd) < 1e-6 * scale


@pytest.mark.parametrize("name", list(DYNAMICS))
@pytest.mark.parametrize("mu", [0.0, 0.6, 1.0, "auto"])
def test_fast_paths_equal_the_general_jvp_path(name, mu, monkeypatch):
    """The default step equals Algorithm 1 as written: step 4 as ONE torch.func.jvp of Φ_t,
    and Δ_t, p_t as forward-mode directional derivatives of E (no ∇E formed)."""
    dyn, lr, params, batches, objective, _ = _setup(name)
    beta = 1e-2 if name != "adam" else 1e-5
    tuner = hg.Marthe(dyn, lr, beta, mu=mu, kappa=1e-3)
    runs = [_run(tuner, params, batches, objective, T)]
    import hypergrad.dynamics as dynamics_module
    import hypergrad.online as online_module

    def phi_jvp_reference(self, w, lr_, batch, aux, dw=None, need_B=True):
        return dynamics_module.phi_jvp_reference(self, w, lr_, batch, aux, dw)

    def directional_value_and_grad(objective_, state):   # ∇E never formed: jvp along each leaf
        theta = state.w["params"]
        f = lambda th: dynamics_module.call_objective(objective_, state, th)  # noqa: E731
        value = f(theta)
        g = {}
        for k, x in theta.items():
            basis = torch.eye(x.numel(), dtype=x.dtype).reshape(x.numel(), *x.shape)
            dirs = {j: torch.zeros_like(y) for j, y in theta.items()}
            g[k] = torch.func.vmap(
                lambda e, k=k, d=dirs: jvp(f, (theta,), ({**d, k: e},))[1])(basis).reshape(x.shape)
        return value.detach(), g

    monkeypatch.setattr(hg.Dynamics, "phi_jvp", phi_jvp_reference)
    monkeypatch.setattr(online_module, "objective_value_and_grad", directional_value_and_grad)
    ref_state, ref_infos = _run(tuner, params, batches, objective, T)
    for ostate, infos in runs:
        for a, b in zip(infos, ref_infos, strict=True):
            assert a.lr == pytest.approx(b.lr, rel=1e-10, abs=1e-14)
            assert a.hypergradient == pytest.approx(b.hypergradient, rel=1e-10, abs=1e-14)
            assert a.mu == pytest.approx(b.mu, rel=1e-10, abs=1e-12)
        for slot in ref_state.Z:
            assert max_diff(ostate.Z[slot], ref_state.Z[slot]) < 1e-10
    assert any(i.lr != lr for i in ref_infos)       # the schedule really moved


@pytest.mark.parametrize("name", list(DYNAMICS))
def test_hd_and_rtho_are_marthe_with_mu_fixed(name):
    dyn, lr, params, batches, objective, _ = _setup(name)
    beta = 1e-2 if name != "adam" else 1e-5
    for special, mu in ((hg.HD, 0.0), (hg.RTHO, 1.0)):
        a = _run(special(dyn, lr, beta), params, batches, objective, T)[1]
        b = _run(hg.Marthe(dyn, lr, beta, mu=mu), params, batches, objective, T)[1]
        assert a == b


def test_hd_closed_form_for_sgd():
    """η_t = max(η_{t-1} + β ∇E(w_t)ᵀ ∇L_{t-1}(w_{t-1}), 0), w_{t+1} = w_t − η_t ∇L_t(w_t)."""
    dyn, lr, params, batches, objective, loss = _setup("sgd")
    beta = 0.05
    infos = _run(hg.HD(dyn, lr, beta), params, batches, objective, T)[1]
    w, eta, prev_g, etas = dict(params), lr, None, []
    for t in range(T):
        g = grad(loss)(w, batches[t])
        if t >= 1:
            gE = grad(objective)(w)
            eta = max(eta + beta * sum(float((gE[k] * prev_g[k]).sum()) for k in w), 0.0)
        etas.append(eta)
        w = {k: w[k] - eta * g[k] for k in w}
        prev_g = g
    assert [i.lr for i in infos] == pytest.approx(etas, rel=1e-12)
    assert len(set(etas)) > 5


def test_hd_on_the_training_loss_is_baydins_sgd_hd():
    """objective = the next training minibatch: Baydin et al.'s SGD-HD (Algorithm 1 there)."""
    dyn, lr, params, batches, _, loss = _setup("sgd", T_=T + 1)
    beta = 0.02
    tuner = hg.HD(dyn, lr, beta)
    ostate = tuner.init(params)
    ours = []
    for t in range(T):
        ostate, info = tuner.step(ostate, batches[t], lambda p, b=batches[t]: loss(p, b))
        ours.append(info.lr)
    # Baydin: α_t = α_{t-1} + β ∇f_t(θ_{t-1})ᵀ ∇f_{t-1}(θ_{t-2}),  θ_t = θ_{t-1} − α_t ∇f_t(θ_{t-1})
    theta, alpha, prev, theirs = dict(params), lr, None, []
    for t in range(T):
        g = grad(loss)(theta, batches[t])
        if prev is not None:
            alpha = alpha + beta * sum(float((g[k] * prev[k]).sum()) for k in theta)
        theirs.append(alpha)
        theta = {k: theta[k] - alpha * g[k] for k in theta}
        prev = g
    assert min(theirs) > 0                      # no clamping happened: the two must agree
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert max_diff(tuner.params(ostate), theta) < 1e-12


def beale(p, batch=None):
    x, y = p["x"][0], p["x"][1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2)


def test_adaptive_mu_stays_at_one_on_beale():
    """Appendix A: on Beale the heuristic keeps μ_t = 1 (after μ_0 = 0)."""
    dyn = hg.sgd(beale)
    tuner = hg.Marthe(dyn, lr=0.0, beta=1e-7, mu="auto")
    _, hist = hg.run_online(tuner, {"x": torch.tensor([1.0, 1.5], dtype=DT)}, [None] * 500,
                            lambda p: beale(p), max_loss_ratio=math.inf)
    assert hist.mu[0] == 0.0
    assert sum(m > 0.99 for m in hist.mu[1:]) >= 0.95 * 499
    assert hist.objective[-1] < hist.objective[0]


def test_adaptive_mu_by_hand_on_a_quadratic():
    """Appendix A's rule, recomputed by hand on GD for ½x² from x_0 = 1 with η = 1.5.

    t = 0: μ_0 = 0, x_1 = −0.5, Z_1 = B_0 = −1.
    t = 1: ∇E(x_1) = −0.5, Δ_1 = 0.5, p_1 = ∇E(x_1) B_0 = 0.5 → c = 1; ρ_1 = (ρ_0 + 1) μ_0 = 0,
           μ_1 = 1; Z_2 = μ_1 (1 − η) Z_1 + B_1 = 0.5 + 0.5 = 1, x_2 = 0.25.
    t = 2: ∇E(x_2) = 0.25, Δ_2 = 0.25, p_2 = 0.25 · 0.5 → c = min(2, 1) = 1; ρ_2 = (0 + 1) · 1 = 1.
    """
    dyn = hg.sgd(lambda p, b: 0.5 * (p["x"] ** 2).sum())
    objective = lambda p: 0.5 * (p["x"] ** 2).sum()  # noqa: E731
    tuner = hg.Marthe(dyn, lr=1.5, beta=0.0, mu="auto")
    ostate = tuner.init({"x": torch.tensor([1.0], dtype=DT)})
    mus, rhos, deltas = [], [], []
    for _ in range(3):
        ostate, info = tuner.step(ostate, None, objective)
        mus.append(info.mu)
        rhos.append(ostate.rho)
        deltas.append(info.hypergradient)
    assert mus == [0.0, 1.0, 1.0] and rhos == [0.0, 0.0, 1.0] and deltas == [0.0, 0.5, 0.25]


def test_adaptive_mu_resets_when_the_estimates_disagree():
    """Δ_t and p_t of opposite sign → c = 0 → μ_t = 0, and the counter ρ restarts from 0."""
    dyn = hg.sgd(lambda p, b: 0.5 * ((p["x"] - 1) ** 2).sum())
    E = lambda p: 0.5 * ((p["x"] + 1) ** 2).sum()  # noqa: E731
    tuner = hg.Marthe(dyn, lr=0.5, beta=0.0, mu="auto")
    ostate = tuner.init({"x": torch.tensor([0.0], dtype=DT)})
    for _ in range(4):
        ostate, info = tuner.step(ostate, None, E)
    assert info.mu == 1.0 and ostate.rho == 2.0          # agreeing estimates: μ stays at 1
    # Make the accumulated estimate point against the one-step estimate p_t = ∇E(x_t) B_{t-1} > 0.
    ostate = ostate._replace(Z={"params": {"x": torch.tensor([-2.0], dtype=DT)}})
    p_t = float(grad(E)(ostate.state.w["params"])["x"] * ostate.B_prev["x"])
    ostate, info = tuner.step(ostate, None, E)
    assert info.hypergradient < 0 < p_t                  # the two estimates disagree
    assert info.mu == 0.0 and ostate.rho == 3.0          # ρ_t uses μ_{t-1} = 1: (2 + 1) · 1
    assert torch.equal(ostate.Z["params"]["x"], ostate.B_prev["x"])   # Z_{t+1} = B_t: forgotten
    ostate, info = tuner.step(ostate, None, E)
    assert ostate.rho == 0.0                             # ρ_{t+1} = (ρ_t + 1) μ_t = 0: reset


def test_adaptive_beta_rule():
    """β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0), formed before η_t."""
    dyn, lr, params, batches, objective, _ = _setup("sgd")
    kappa, beta0 = 0.5, 1e-2
    infos = _run(hg.Marthe(dyn, lr, beta0, mu=0.5, kappa=kappa), params, batches, objective, T)[1]
    beta, eta = beta0, lr
    for prev, cur in zip(infos, infos[1:], strict=False):
        beta = max(beta + kappa * cur.hypergradient * prev.hypergradient, 0.0)
        eta = max(eta - beta * cur.hypergradient, 0.0)
        assert cur.beta == pytest.approx(beta, rel=1e-12)
        assert cur.lr == pytest.approx(eta, rel=1e-12)
    assert len({float(i.beta) for i in infos}) > 3


def test_clip_bounds_the_hypergradient_as_the_authors_release_does():
    """``clip=c``: Δ_t = clip(∇E(w_t)ᵀθ(Z_t), −c, c) moves η, β and μ; without it Δ_t is the
    plain product (the run with a clip under every |Δ_t| is the same run)."""
    dyn, lr, params, batches, objective, _ = _setup("sgd")
    kw = dict(lr=lr, beta=1e-2, mu="auto", kappa=0.5)
    free = _run(hg.Marthe(dyn, **kw), params, batches, objective, T)[1]
    top = max(abs(float(i.hypergradient)) for i in free)
    assert _run(hg.Marthe(dyn, **kw, clip=2 * top), params, batches, objective, T)[1] == free
    c = top / 4
    clipped = _run(hg.Marthe(dyn, **kw, clip=c), params, batches, objective, T)[1]
    deltas = [float(i.hypergradient) for i in clipped]
    assert max(abs(d) for d in deltas) == pytest.approx(c, rel=1e-15)
    assert any(abs(d) < c for d in deltas[1:])         # not every step at the bound
    beta, eta = 1e-2, lr
    for prev, cur in zip(clipped, clipped[1:], strict=False):
        beta = max(beta + 0.5 * float(cur.hypergradient) * float(prev.hypergradient), 0.0)
        eta = max(eta - beta * float(cur.hypergradient), 0.0)
        assert float(cur.beta) == pytest.approx(beta, rel=1e-12)
        assert float(cur.lr) == pytest.approx(eta, rel=1e-12)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="clip"):
            hg.Marthe(dyn, **kw, clip=bad)


def test_lr_is_clamped_at_zero():
    dyn, lr, params, batches, objective, _ = _setup("sgd")
    infos = _run(hg.HD(dyn, lr, beta=100.0), params, batches, objective, T)[1]
    assert min(i.lr for i in infos) == 0.0


def test_state_dict_resumes_bit_identically():
    dyn, lr, params, batches, objective, _ = _setup("momentum")
    tuner = hg.Marthe(dyn, lr, 1e-2, mu="auto", kappa=1e-3)
    full, infos_full = _run(tuner, params, batches, objective, T)
    ostate = tuner.init(params)
    for t in range(5):
        ostate, _ = tuner.step(ostate, batches[t], objective)
    buf = io.BytesIO()
    torch.save(tuner.state_dict(ostate), buf)
    buf.seek(0)
    ostate = tuner.load_state_dict(torch.load(buf, weights_only=False))
    infos = []
    for t in range(5, T):
        ostate, info = tuner.step(ostate, batches[t], objective)
        infos.append(info)
    assert infos == infos_full[5:]
    assert all(torch.equal(ostate.state.w["params"][k], full.state.w["params"][k]) for k in params)
    with pytest.raises(ValueError, match="format"):
        tuner.load_state_dict({"t": 3})


@pytest.mark.parametrize("kw,match", [
    (dict(lr=-0.1), "lr"), (dict(lr=float("nan")), "lr"), (dict(beta=-1.0), "beta"),
    (dict(mu=1.5), "mu"), (dict(mu=-0.1), "mu"), (dict(mu="sometimes"), "mu"),
    (dict(kappa=-1.0), "kappa"), (dict(kappa=float("nan")), "kappa"),
])
def test_bad_input(kw, match):
    dyn = _setup("sgd")[0]
    args = dict(lr=0.1, beta=0.01) | kw
    with pytest.raises(ValueError, match=match):
        hg.Marthe(dyn, **args)


def test_divergence_names_the_step_and_step_size_selection_recovers():
    dyn = hg.sgd(beale)
    x0 = {"x": torch.tensor([1.0, 1.5], dtype=DT)}

    def run(beta):
        return hg.run_online(hg.RTHO(dyn, lr=0.0, beta=beta), x0, [None] * 300,
                             lambda p: beale(p))[1]

    with pytest.raises(hg.DivergenceError) as err:
        run(1e-2)
    assert 0 < err.value.step < 300 and f"step {err.value.step}" in str(err.value)
    value, hist = hg.select_hyper_lr(run, start=1e-2)
    assert value < 1e-2 and len(hist.lr) == 300
    assert all(math.isfinite(v) for v in hist.objective)
    with pytest.raises(hg.DivergenceError):
        hg.select_hyper_lr(lambda v: run(1e-2), start=1.0, max_tries=2)


def test_fixed_schedule_is_a_tuner_with_the_same_contract():
    """FixedSchedule runs through run_online and equals dyn.step with the schedule."""
    dyn, lr, params, batches, objective, _ = _setup("momentum")
    sched = [lr * 0.9**t for t in range(T)]
    ostate, hist = hg.run_online(hg.FixedSchedule(dyn, sched), params, batches[:T], objective)
    state = dyn.init(params)
    for t in range(T):
        state = dyn.step(state, sched[t], batches[t])
    assert hist.lr == sched and ostate.t == T
    assert max_diff(ostate.state.w["params"], state.w["params"]) == 0
    assert all(math.isnan(m) for m in hist.mu) and all(math.isnan(v) for v in hist.objective)
    tensor_sched = hg.FixedSchedule(dyn, torch.tensor(sched, dtype=DT))
    assert hg.run_online(tensor_sched, params, batches[:T], objective)[1].lr == sched
    with pytest.raises(ValueError, match="step 3"):
        hg.FixedSchedule(dyn, [0.1, 0.1, 0.1]).step(
            hg.FixedSchedule(dyn, [0.1]).init(params)._replace(t=3), batches[0])
    with pytest.raises(ValueError, match="step 0"):
        hg.FixedSchedule(dyn, lambda t: -1.0).init(params)


def test_make_tuner_builds_each_method_by_name():
    dyn, lr, params, batches, objective, _ = _setup("sgd")
    assert hg.make_tuner("hd", dyn, lr=lr, beta=1e-2) == hg.HD(dyn, lr, 1e-2)
    assert hg.make_tuner("RTHO", dyn, lr=lr, beta=1e-2) == hg.RTHO(dyn, lr, 1e-2)
    m = hg.make_tuner("marthe", dyn, lr=lr, beta=1e-2, mu=0.5, kappa=1e-3)
    assert (m.mu, m.kappa) == (0.5, 1e-3)
    assert isinstance(hg.make_tuner("fixed", dyn, schedule=[0.1] * 3), hg.FixedSchedule)
    for name, kw, match in (("newton", {}, "method"), ("fixed", {}, "schedule"),
                            ("fixed", dict(schedule=[0.1], beta=1.0), "only a schedule"),
                            ("hd", dict(mu=0.5), "mu"), ("marthe", dict(schedule=[0.1]), "schedule")):
        with pytest.raises(ValueError, match=match):
            hg.make_tuner(name, dyn, **kw)


def test_check_blowup_is_the_one_rule():
    hg.loop.check_blowup(3, 9.9, 1.0, 10.0)
    with pytest.raises(hg.DivergenceError, match="blew up") as err:
        hg.loop.check_blowup(3, 10.1, 1.0, 10.0)
    assert err.value.step == 3
    hg.loop.check_blowup(3, 1e300, 1.0, math.inf)
