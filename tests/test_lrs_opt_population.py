"""LRS-OPT for N seeds as one batched computation (hypergrad.lrs_opt_population): every member
equals its serial lrs_opt run — schedules, histories, optimiser states, and a member that
diverges stops alone at the iteration and inner step its serial run reports."""

import math

import pytest
import torch

import hypergrad as hg
from hypergrad.hypergradient import hypergradient, hypergradients
from hypergrad.lrs_opt import lrs_opt
from hypergrad.lrs_opt_population import lrs_opt_population
from tests.helpers import DT, problem, tiny_mlp

N, T, B = 3, 6, 8


def _setup(dtype=DT, momentum=0.5):
    _, loss, _, _, objective = problem(T=T, seed=0)
    dyn = hg.sgd(loss, momentum=momentum)
    params = [{k: v.detach().clone().to(dtype) for k, v in tiny_mlp(10 + i).named_parameters()}
              for i in range(N)]

    def fresh(i):
        def batches(it):
            g = torch.Generator().manual_seed(100 * i + it)
            return [(torch.randn(B, 5, dtype=DT, generator=g).to(dtype),
                     torch.randint(0, 3, (B,), generator=g)) for _ in range(T)]
        return batches

    def obj(p):
        return objective({k: v.to(DT) for k, v in p.items()}).to(dtype)

    lrs = [torch.full((T,), 0.1 + 0.05 * i, dtype=dtype) for i in range(N)]
    return dyn, params, lrs, [fresh(i) for i in range(N)], obj


def _rel(a, b):
    return max((abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b, strict=True)), default=0.0)


@pytest.mark.parametrize("optimizer,step", [("pgd", 0.3), ("adam", 0.01)])
@pytest.mark.parametrize("k", [None, T])
def test_every_member_equals_its_serial_run_float64(optimizer, step, k):
    dyn, params, lrs, fns, obj = _setup()
    pop = lrs_opt_population(dyn, params, lrs, fns, obj, 4, step, max_lr=0.5,
                             optimizer=optimizer, checkpoint_every=k)
    assert len(pop) == N
    for i in range(N):
        ser = lrs_opt(dyn, params[i], lrs[i], fns[i], obj, 4, step, max_lr=0.5,
                      optimizer=optimizer, progress=False)
        assert pop[i].iterations == ser.iterations == 4 and pop[i].diverged is None
        assert _rel(pop[i].lrs, ser.lrs) < 1e-10 and _rel(pop[i].previous, ser.previous) < 1e-10
        assert _rel(pop[i].history, ser.history) < 1e-10
        assert pop[i].settings == ser.settings
        if optimizer == "adam":
            st, ss = pop[i].optimizer_state, ser.optimizer_state
            assert st["k"] == ss["k"] == 4
            assert _rel(st["m"], ss["m"]) < 1e-8 and _rel(st["v"], ss["v"]) < 1e-8
    assert len({tuple(r.lrs) for r in pop}) == N            # the members really differ


def test_float32_members_equal_their_serial_runs_to_rounding():
    dyn, params, lrs, fns, obj = _setup(dtype=torch.float32)
    pop = lrs_opt_population(dyn, params, lrs[0], fns, obj, 3, 0.3)   # one shared start
    for i in range(N):
        ser = lrs_opt(dyn, params[i], lrs[0], fns[i], obj, 3, 0.3, progress=False)
        assert _rel(pop[i].lrs, ser.lrs) < 1e-4 and _rel(pop[i].history, ser.history) < 1e-5


def test_a_member_that_diverges_stops_alone_where_its_serial_run_does():
    dyn, params, lrs, fns, obj = _setup(momentum=0.0)

    def poisoned(member, iteration, step):
        def batches(it):
            bs = fns[member](it)
            if it == iteration:
                bs[step] = (bs[step][0] * math.nan, bs[step][1])
            return bs
        return batches

    cases = [(lrs, [fns[0], poisoned(1, 0, 0), fns[2]]),       # at once: keeps its start
             (lrs, [fns[0], fns[1], poisoned(2, 2, 3)])]       # at iteration 2, inner step 3
    pops = []
    for start, batches in cases:
        pop = lrs_opt_population(dyn, params, start, batches, obj, 5, 0.3)
        pops.append(pop)
        for i in range(N):
            ser = lrs_opt(dyn, params[i], start[i], batches[i], obj, 5, 0.3, progress=False)
            assert (pop[i].diverged is None) == (ser.diverged is None), i
            if ser.diverged is not None:
                d, s = pop[i].diverged, ser.diverged
                assert (d["iteration"], d["step"], d["message"]) == (
                    s["iteration"], s["step"], s["message"])
                assert _rel(d["lrs"], s["lrs"]) < 1e-10
            assert pop[i].iterations == ser.iterations
            assert _rel(pop[i].lrs, ser.lrs) < 1e-10 and _rel(pop[i].history, ser.history) < 1e-10
        assert pop[0].diverged is None and pop[0].iterations == 5
    first, later = pops[0][1], pops[1][2]
    assert (first.diverged["iteration"], first.diverged["step"], first.iterations) == (0, 0, 0)
    assert first.lrs == lrs[1].tolist()                     # diverged at once: keeps its start
    assert (later.diverged["iteration"], later.diverged["step"], later.iterations) == (2, 3, 2)
    assert pops[1][1].iterations == 5


def test_batched_hypergradients_equal_the_serial_ones_and_name_failures():
    dyn, params, lrs, fns, obj = _setup()
    lrs[1] = torch.full((T,), 1e300, dtype=DT)                     # member 1 overflows
    bs = [f(0) for f in fns]
    bs[2][3] = (bs[2][3][0] * math.nan, bs[2][3][1])                # member 2: NaN at step 3
    stacked = [(torch.stack([b[t][0] for b in bs]), torch.stack([b[t][1] for b in bs]))
               for t in range(T)]
    theta = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    for k in (1, 2, T):
        values, grads, fails = hypergradients(dyn, theta, torch.stack(lrs), stacked, obj,
                                              checkpoint_every=k)
        for i in range(N):
            try:
                v, g = hypergradient(dyn, params[i], lrs[i], bs[i], obj)
            except hg.DivergenceError as e:
                assert fails[i] is not None and str(fails[i]) == str(e)
                continue
            assert fails[i] is None
            assert math.isclose(float(values[i]), float(v), rel_tol=1e-12)
            assert torch.allclose(grads[i], g, rtol=1e-10, atol=1e-14)
        assert fails[0] is None and fails[2].step == 3 and fails[2].reason == (
        "the training loss is not finite")


def test_bad_input_is_a_clear_error():
    dyn, params, lrs, fns, obj = _setup()

    def run(**kw):
        args = dict(params=params, lrs=lrs, batches=fns, iterations=2, step_size=0.1)
        args.update(kw)
        return lrs_opt_population(dyn, args.pop("params"), args.pop("lrs"), args.pop("batches"),
                                  obj, args.pop("iterations"), args.pop("step_size"), **args)

    with pytest.raises(ValueError, match="one entry per member"):
        run(batches=fns[:2])
    with pytest.raises(ValueError, match="2 schedules for 3 members"):
        run(lrs=lrs[:2])
    with pytest.raises(ValueError, match=r"member 1's schedule: learning rates must be >= 0"):
        run(lrs=[lrs[0], -lrs[1], lrs[2]])
    with pytest.raises(ValueError, match=r"member 2's schedule: .*non-finite"):
        run(lrs=[lrs[0], lrs[1], lrs[2] * math.nan])
    with pytest.raises(ValueError, match="non-finite"):
        run(lrs=torch.full((T,), math.nan, dtype=DT))
    with pytest.raises(ValueError, match="must share T"):
        run(lrs=[lrs[0], lrs[1][:-1], lrs[2]])
    with pytest.raises(ValueError, match="member 0 has 5 minibatches at iteration 0"):
        run(batches=[lambda it: fns[0](it)[:5], fns[1], fns[2]])
    with pytest.raises(ValueError, match="cannot be stacked"):
        run(batches=[lambda it: [(x[:4], y[:4]) for x, y in fns[0](it)], fns[1], fns[2]])
    with pytest.raises(ValueError, match="member 1 has other weights"):
        run(params=[params[0], {k: v[..., :1] for k, v in params[1].items()}, params[2]])
    with pytest.raises(ValueError, match="sequence of N weight dicts"):
        run(params=params[0])
    with pytest.raises(ValueError, match="sequence of N weight dicts"):
        run(params=[])
    with pytest.raises(ValueError, match="step_size"):
        run(step_size=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        run(iterations=-1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        run(optimizer="sgd")
    with pytest.raises(ValueError, match="max_lr"):
        run(max_lr=math.nan)
    # nothing to do: the initial schedules, untouched
    res = run(iterations=0)
    assert [r.lrs for r in res] == [s.tolist() for s in lrs] and all(r.history == [] for r in res)
