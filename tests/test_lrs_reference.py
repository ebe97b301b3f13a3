"""The LRS-OPT reference of ``mnist-protocol`` (issue 21, item 2): its place in the plan, that
its units resume and store themselves, that the average is the mean of the iterates, and the
reading of its held-out trace (:func:`lrs_convergence`, :func:`lrs_versus`)."""

import copy
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from hypergrad.experiments import parallel, protocol
from hypergrad.experiments.mnist_schedules import MnistTask
from hypergrad.experiments.protocol import (
    LRS_FAMILIES,
    compute_unit,
    family_units,
    lrs_convergence,
    lrs_versus,
    plan_units,
    run_mnist_protocol,
)
from hypergrad.experiments.settings import settings
from hypergrad.experiments.store import UnitStore, float32_trace, read_unit_file, unit_files
from hypergrad.lrs_opt_heldout import heldout_objective
from tests.helpers import needs_mnist

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]

#: the paper-scale plan before the LRS-OPT reference was added (1380 units), family by family,
#: and a digest of its names, settings and compute tuples in order: the running sweep's units
OLD_COUNTS = {"authors-clip100": 220, "extend": 80, "mu0.999": 140, "authors-noclip": 220,
              "eta0": 360, "valbatch": 360}
OLD_DIGEST = "f2885ab85a1add078dcd14c9e73b4d2663e8c33ade2d6bccd2683dcb51ffddf7"


def _digest(units) -> str:
    return hashlib.sha256(json.dumps([[u.name, u.settings, list(u.compute)] for u in units],
                                     sort_keys=True).encode()).hexdigest()


REAL_LRS_OPT = protocol.lrs_opt


def _family(u) -> str:
    f = u.settings["family"]
    return f + (f"-{u.name.split('_')[1]}" if u.name.startswith("authors") else "")


# ------------------------------------------------------------------ the plan
def _old_plan_settings(s: dict) -> dict:
    """``s`` with the grids the sweep started from: every κ unclipped, η_0 and the validation
    minibatch on every seed (cut since to issue 21's budget)."""
    old = copy.deepcopy(s)
    old["authors"].pop("noclip_kappas")
    for family in ("eta0", "valbatch"):
        old[family].pop("seeds")
    return old


def test_the_reference_comes_after_every_existing_unit_which_are_unchanged():
    s = settings("mnist-protocol", "paper")
    later = ("extend-marthe",)                   # families added to the plan since
    units = [u for u in plan_units(_old_plan_settings(s))
             if u.settings["family"] not in later]
    old = [u for u in units if u.settings["family"] not in LRS_FAMILIES]
    new = [u for u in units if u.settings["family"] in LRS_FAMILIES]
    assert len(old) == 1380 == sum(OLD_COUNTS.values())
    assert units[:len(old)] == old                      # appended, nothing in between
    counts = {}
    for u in old:
        counts[_family(u)] = counts.get(_family(u), 0) + 1
    assert counts == OLD_COUNTS and list(counts) == list(OLD_COUNTS)
    assert _digest(old) == OLD_DIGEST                   # names, settings, order: as before
    fams = [f for f in s["families"] if f not in later]
    assert fams[:6] == list(OLD_COUNTS) and fams[6:] == list(LRS_FAMILIES)
    assert [u.name for u in new] == (
        [f"lrsref_adam_seed{k}" for k in range(4)] + ["lrsref_pgd_seed0"]
        + [f"lrsref_heldout_adam_seed{k}" for k in range(4)] + ["lrsref_heldout_pgd_seed0"])
    assert all(u.compute[0] == "lrs_opt" and u.batch is None for u in new)
    adam, pgd, held = new[0].settings, new[4].settings, new[5].settings
    assert (adam["optimizer"], adam["step_size"], adam["max_lr"], adam["init"]) == (
        "adam", 0.03, None, 0.1)
    assert (pgd["optimizer"], pgd["step_size"], pgd["max_lr"]) == ("pgd", 0.2, None)
    for u in (adam, pgd):
        assert (u["iterations"], u["average_from"], u["snapshot_every"], u["T"]) == (
            500, 250, 25, 500)
    assert held == {**adam, "family": "lrs-heldout", "draws": 8}


def test_the_plan_now_is_the_old_plan_cut_to_the_budget_in_the_same_order():
    s = settings("mnist-protocol", "paper")
    old = plan_units(_old_plan_settings(s))
    now = plan_units(s)
    names = [u.name for u in old]
    where = [names.index(u.name) for u in now]
    assert where == sorted(where)                       # a subsequence: nothing moved
    assert all(old[i] == u for i, u in zip(where, now, strict=True))   # nothing changed
    counts = {}
    for u in now:
        counts[_family(u)] = counts.get(_family(u), 0) + 1
    assert counts == {"authors-clip100": 220, "extend": 80, "extend-marthe": 40,
                      "mu0.999": 140, "authors-noclip": 120, "eta0": 180, "valbatch": 180,
                      "lrs-adam": 4, "lrs-pgd": 1, "lrs-heldout": 5}
    noclip = {u.settings["kappa"] for u in now if u.name.startswith("authors_noclip")}
    assert noclip == set(s["authors"]["noclip_kappas"]) < set(s["authors"]["kappas"])
    for family in ("eta0", "valbatch"):
        assert {u.settings["seed"] for u in now if u.settings["family"] == family} == set(
            range(10))


def test_the_stored_units_of_the_sweep_hold_the_settings_of_the_plan():
    files = unit_files(ROOT / "results" / "mnist-protocol" / "paper" / "units")
    if not files:
        pytest.skip("no paper-scale protocol unit is stored")
    plan = {u.name: u.settings for u in plan_units(settings("mnist-protocol", "paper"))}
    for name, path in files.items():
        data = read_unit_file(path)
        assert name in plan, path.name
        assert data is not None and data["settings"] == plan[name], path.name


def test_family_units_give_the_reference_on_its_own_seeds_only():
    s = settings("mnist-protocol", "paper")
    assert family_units(s, "lrs-adam", 5) == [] and family_units(s, "lrs-pgd", 1) == []
    assert [u.name for u in family_units(s, "lrs-heldout", 0)] == [
        "lrsref_heldout_adam_seed0", "lrsref_heldout_pgd_seed0"]
    assert [u.name for u in family_units(s, "lrs-heldout", 3)] == ["lrsref_heldout_adam_seed3"]
    # the plan of a sweep without the reference is the plan of the old families
    old = {**_old_plan_settings(s), "families": list(OLD_COUNTS)}
    assert _digest(plan_units(old)) == OLD_DIGEST


# ------------------------------------------------------------------ the units (tiny scale)
@pytest.fixture(scope="module")
def tiny():
    s = settings("mnist-protocol", "tiny")
    return s, MnistTask(s, "cpu")


def _unit(s, name):
    return next(u for u in plan_units(s) if u.name == name)


def _interrupting(monkeypatch, at: int | None):
    """Make the units' LRS-OPT save every iteration and raise after iteration ``at``."""
    real = REAL_LRS_OPT

    def wrapper(*args, callback=None, **kw):
        def cb(it, *rest):
            callback(it, *rest)
            if at is not None and it == at:
                raise RuntimeError(f"interrupted at iteration {it}")
        return real(*args, callback=cb, **{**kw, "save_every": 1})

    monkeypatch.setattr(protocol, "lrs_opt", wrapper)


@needs_mnist
@pytest.mark.parametrize("optimizer", ["adam", "pgd"])
def test_an_interrupted_unit_resumes_to_the_uninterrupted_result(tmp_path, tiny, monkeypatch,
                                                                 optimizer):
    s, task = tiny
    unit = _unit(s, f"lrsref_{optimizer}_seed0")
    _interrupting(monkeypatch, None)
    whole = compute_unit(task, s, unit, UnitStore(tmp_path / "whole"))
    store = UnitStore(tmp_path / "cut")
    _interrupting(monkeypatch, 3)        # in the last iteration, before it is saved
    with pytest.raises(RuntimeError, match="interrupted at iteration 3"):
        compute_unit(task, s, unit, store)
    partial = json.loads(store.path(unit.name, ".partial.json").read_text())
    assert partial["iterations"] == 3 and partial["averaged_count"] == 1
    assert store.lookup(unit.name, unit.settings) is None
    assert not store.path(unit.name, ".lock").exists()
    _interrupting(monkeypatch, None)
    again = compute_unit(task, s, unit, UnitStore(tmp_path / "cut"))
    assert again == whole                                 # bit for bit
    assert not store.path(unit.name, ".partial.json").exists()
    saved = read_unit_file(store.file(unit.name))
    assert saved["settings"] == unit.settings and saved["result"] == whole
    # the history of the resumed run is the whole one, not 1 + 3 iterations
    assert len(whole["history"]) == whole["iterations"] == s["lrs_ref"]["iterations"]


@needs_mnist
def test_the_average_is_the_mean_of_the_iterates_and_the_metrics_are_its_training(tmp_path,
                                                                                   tiny):
    s, task = tiny
    r = s["lrs_ref"]
    res = compute_unit(task, s, _unit(s, "lrsref_adam_seed0"), UnitStore(tmp_path))
    snaps = res["snapshots"]
    assert [x["iteration"] for x in snaps] == list(range(1, r["iterations"] + 1))
    assert snaps[-1]["lrs"] == float32_trace(res["lrs"])
    tail = [x["lrs"] for x in snaps if x["iteration"] > r["average_from"]]
    assert res["averaged_count"] == len(tail) == r["iterations"] - r["average_from"] == 2
    mean = torch.tensor(tail, dtype=torch.float64).mean(0)
    assert torch.allclose(torch.tensor(res["averaged"], dtype=torch.float64), mean,
                          rtol=1e-6, atol=0)               # snapshots: float32 precision
    assert res["averaged"] != res["lrs"]
    # the first averaged snapshot is its own iterate; none before averaging began
    assert [x["averaged"] is None for x in snaps] == [True, True, False, False]
    assert snaps[2]["averaged"] == snaps[2]["lrs"]
    params, batches = task.init_params(0), task.batches(0)
    last, avg = (task.train_fixed(params, lrs, batches) for lrs in (res["lrs"], res["averaged"]))
    assert {k: res[k] for k in last} == last
    assert res["averaged_metrics"] == avg
    assert res["diverged"] is None and res["iterations"] == r["iterations"]


@needs_mnist
def test_the_heldout_trace_is_every_snapshot_on_draws_lrs_opt_never_saw(tmp_path, tiny):
    s, task = tiny
    store = UnitStore(tmp_path)
    unit = _unit(s, "lrsref_heldout_adam_seed0")
    trace = compute_unit(task, s, unit, store)            # computes its run first
    run = store.lookup("lrsref_adam_seed0", _unit(s, "lrsref_adam_seed0").settings)
    assert run is not None and store.computed == 2
    n, d = s["lrs_ref"]["iterations"], s["lrs_ref"]["draws"]
    assert trace["iteration"] == list(range(n + 1)) and trace["draws"] == d
    assert trace["averaged"][:3] == [None, None, None]
    assert trace["schedules"]["lrs"][0] == [s["lrs_ref"]["init"]] * s["T"]
    draws = [task.batches(0, salt=n + 1 + k) for k in range(d)]
    want = heldout_objective(task.dyn, task.init_params(0),
                             {"lrs": trace["schedules"]["lrs"][-1],
                              "averaged": trace["schedules"]["averaged"][-1]},
                             draws, task.objective)
    assert trace["lrs"][-1] == want["lrs"] and trace["averaged"][-1] == want["averaged"]
    # the draws are not LRS-OPT's (salts 1 … n) nor the seed's own minibatches (salt 0)
    seen = [task.batches(0, salt=k) for k in range(n + 1)]
    assert all(not torch.equal(a[0][0], b[0][0]) for a in draws for b in seen)
    # stored: a second call (another session) loads it, and reads the same
    again = UnitStore(tmp_path)
    assert compute_unit(task, s, unit, again) == trace
    assert (again.loaded, again.computed) == (1, 0)
    c = lrs_convergence(trace)
    assert c["iterations"] == [n - 1, n] and c["lrs"]["change"]["n"] == d


@needs_mnist
def test_the_units_store_themselves_in_a_worker_and_in_the_sweep(tmp_path, tiny):
    s, task = tiny
    s = {**s, "families": list(LRS_FAMILIES)}
    units = plan_units(s)
    assert [u.name for u in parallel.pending_units("mnist-protocol", s, tmp_path)] == [
        u.name for u in units]
    store = UnitStore(tmp_path)
    for u in units[:2]:                                   # the runs, as a worker does
        parallel._compute_job(protocol, task, s, store, [u], 1)
    assert [u.name for u in parallel.pending_units("mnist-protocol", s, tmp_path)] == [
        u.name for u in units[2:]]
    first = run_mnist_protocol(s, tmp_path, progress=False)
    assert first["runs"] == {} and sorted(first["lrs_ref"]) == sorted(u.name for u in units)
    assert first["units"] == {"computed": 2, "loaded": 2}
    ro = run_mnist_protocol({**s, "lrs_ref": {**s["lrs_ref"], "seeds": [0, 1]}},
                            progress=False, store=UnitStore(tmp_path, readonly=True))
    assert ro["lrs_ref"] == first["lrs_ref"]
    assert ro["missing"] == ["lrsref_adam_seed1", "lrsref_heldout_adam_seed1"]


@needs_mnist
def test_a_run_that_another_process_computes_is_waited_for_not_computed_twice(tmp_path, tiny,
                                                                               monkeypatch):
    s, task = tiny
    unit = _unit(s, "lrsref_pgd_seed0")
    compute_unit(task, s, unit, UnitStore(tmp_path / "elsewhere"))
    store = UnitStore(tmp_path / "here")
    lock = store.path(unit.name, ".lock")
    lock.parent.mkdir(parents=True)
    monkeypatch.setattr(protocol, "LRS_POLL_S", 0.05)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))

        def finish():                                     # the other process stores it
            time.sleep(0.5)
            done = UnitStore(tmp_path / "elsewhere").file(unit.name)
            shutil.copy(done, lock.with_name("copying.tmp"))
            os.replace(lock.with_name("copying.tmp"), store.path(unit.name))  # atomically

        t = threading.Thread(target=finish)
        start = time.perf_counter()
        t.start()
        got = compute_unit(task, s, unit, store)
        t.join()
        assert time.perf_counter() - start >= 0.5
        assert store.computed == 0 and store.loaded == 1
        assert got["lrs"] == UnitStore(tmp_path / "elsewhere").lookup(unit.name,
                                                                      unit.settings)["lrs"]
    finally:
        other.kill()
        other.wait()
    # a lock whose process has ended is ignored (the unit is computed here)
    fresh = UnitStore(tmp_path / "fresh")
    fresh.path(unit.name, ".lock").parent.mkdir(parents=True)
    fresh.path(unit.name, ".lock").write_text(
        json.dumps({"pid": other.pid, "host": socket.gethostname()}))
    compute_unit(task, s, unit, fresh)
    assert fresh.computed == 1 and not fresh.path(unit.name, ".lock").exists()
    assert os.path.exists(fresh.path(unit.name))


# ------------------------------------------------------------------ the reading
def _trace(lrs, averaged, schedules=None, its=(0, 10, 20)):
    out = {"iteration": list(its), "lrs": lrs, "averaged": averaged, "draws": len(lrs[-1])}
    if schedules is not None:
        out["schedules"] = schedules
    return out


def test_convergence_pairs_the_last_two_snapshots_draw_by_draw():
    held = _trace(
        lrs=[[3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0], [1.1, 2.1, 3.1, 4.1]],
        averaged=[None, [1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.05, 3.95]],
        schedules={"lrs": [[1, 1, 1, 1], [1, 1, 1, 1], [1, 2, 1, 2]],
                   "averaged": [None, [1, 1, 1, 1], [2, 2, 2, 2]]})
    c = lrs_convergence(held)
    assert c["iterations"] == [10, 20] and c["draws"] == 4
    # every draw 0.1 higher: a change far beyond the (zero) noise of the differences
    lrs = c["lrs"]
    assert lrs["change"]["n"] == 4 and lrs["change"]["mean"] == pytest.approx(0.1)
    assert lrs["change"]["lo"] > 0 and lrs["stopped"] is False and lrs["dropped"] == 0
    assert lrs["f_T"] == pytest.approx(2.6) and lrs["mean"] == pytest.approx([3.0, 2.5, 2.6])
    assert lrs["spread"] == pytest.approx(math.sqrt(5 / 3))          # sd of 1.1 … 4.1
    assert lrs["distance"] == pytest.approx(1 / 3)       # [1,1,1,1] → [2/3,4/3,2/3,4/3]
    # ±0.1, ±0.05: a mean change of 0, inside its interval
    avg = c["averaged"]
    assert avg["change"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert avg["change"]["lo"] < 0 < avg["change"]["hi"] and avg["stopped"] is True
    assert avg["distance"] == 0.0 and avg["mean"][0] is None      # same shape, other scale
    assert c["converged"] is False


def test_convergence_leaves_out_diverged_draws_and_says_what_it_cannot_read():
    held = _trace(lrs=[[1.0, 1.0, 1.0], [1.0, 2.0, None], [1.0, 2.0, 3.0]],
                  averaged=[None, None, [1.0, 1.0, 1.0]])
    c = lrs_convergence(held)
    assert c["lrs"]["dropped"] == 1 and c["lrs"]["change"]["n"] == 2
    assert c["lrs"]["change"]["mean"] == 0.0 and c["lrs"]["stopped"] is True
    assert c["lrs"]["distance"] is None                  # no schedules in the trace
    assert c["averaged"]["stopped"] is None and c["averaged"]["change"] is None
    assert c["averaged"]["f_T"] == 1.0 and c["converged"] is None
    one = lrs_convergence(_trace(lrs=[[1.0, 2.0], [None, 1.0]], averaged=[None, None],
                                 its=(0, 5)))
    assert one["lrs"]["change"]["n"] == 1 and one["lrs"]["stopped"] is None
    with pytest.raises(ValueError, match="two snapshots"):
        lrs_convergence(_trace(lrs=[[1.0]], averaged=[None], its=(0,)))


def test_adam_against_pgd_reads_the_iterations_each_needs():
    adam = _trace(lrs=[[3.0, 3.0], [1.0, 1.0], [0.9, 0.8]],
                  averaged=[None, [1.0, 1.0], [0.9, 0.9]])
    pgd = _trace(lrs=[[3.0, 3.0], [2.0, 2.0], [1.0, 1.0]],
                 averaged=[None, [2.0, 2.0], [1.0, 1.2]])
    v = lrs_versus(adam, pgd)
    assert v["key"] == "averaged" and (v["adam_final"], v["pgd_final"]) == (0.9, 1.1)
    assert v["adam_reaches_pgd"] == 10 and v["ratio"] == 2.0      # PGD's 20 in Adam's 10
    assert v["pgd_reaches_adam"] is None                          # never within its budget
    assert v["final"]["n"] == 2 and v["final"]["mean"] == pytest.approx(0.2)
    last = lrs_versus(adam, pgd, key="lrs")
    assert last["adam_reaches_pgd"] == 10 and last["pgd_reaches_adam"] is None
    # PGD better: Adam never gets there, PGD reaches Adam's final value at iteration 10
    w = lrs_versus(pgd, adam)
    assert w["adam_reaches_pgd"] is None and w["ratio"] is None and w["pgd_reaches_adam"] == 10
    with pytest.raises(ValueError, match="not paired"):
        lrs_versus(adam, {**pgd, "draws": 3})
