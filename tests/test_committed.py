"""Reading committed unit files (``experiments.committed``): progress, cost, and the result of
the complete seeds, built by the experiment's own runner on a read-only store that never
computes; the claims of a partial result are undecided with a reason, never a crash."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hypergrad import experiments as ex
from tests.helpers import needs_mnist, write_unit_file

pytestmark = [needs_mnist]


def _one_thread(fn):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)


def _sens_settings():
    s = ex.settings("sensitivity", "tiny")
    s["seeds"] = [0, 1]
    return s


def _mnist_settings():
    s = ex.settings("mnist-schedules", "tiny")
    s["online"]["seeds"] = [0, 1]
    s["lrs_opt"]["seeds"] = [0, 1]
    return s


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Both experiments computed in full at tiny scale (2 seeds), their unit folders kept."""
    root = tmp_path_factory.mktemp("committed")
    for name, s in (("sensitivity", _sens_settings()), ("mnist-schedules", _mnist_settings())):
        _one_thread(lambda name=name, s=s: ex.run(
            name, s, out_dir=ex.result_dir(root, name, "tiny"), progress=False))
    return root


def _copy(full, tmp_path, experiment, keep=lambda name: True, form=".json.gz"):
    """A root under ``tmp_path`` with the unit files of ``experiment`` whose name passes
    ``keep`` (no results.json: only what is committed), each as ``<name><form>``: ``.json.gz``
    as the store writes them, ``.json`` of the older form, or ``"both"`` (a ``.json.gz`` and
    a legacy ``.json`` of other content, which must be ignored)."""
    src = ex.result_dir(full, experiment, "tiny") / "units"
    dst = ex.result_dir(tmp_path, experiment, "tiny") / "units"
    dst.mkdir(parents=True)
    for name, f in ex.unit_files(src).items():
        if not keep(name):
            continue
        if form == ".json.gz" and f.name.endswith(".json.gz"):
            shutil.copy(f, dst / f.name)
            continue
        data = ex.read_unit_file(f)
        if form == "both":
            write_unit_file(dst / f"{name}.json", {**data, "settings": {"stale": True}})
        write_unit_file(dst / f"{name}{'.json.gz' if form == 'both' else form}", data)
    return tmp_path


def _runner_result(root, experiment, s):
    """The runner's own result on the same unit files (a normal store: everything loads)."""
    run = ex.run_sensitivity if experiment == "sensitivity" else ex.run_mnist_schedules
    return run(s, out_dir=ex.result_dir(root, experiment, "tiny"), progress=False)


# --------------------------------------------------------------------------- read-only store
def test_readonly_store_never_computes_nor_moves(tmp_path):
    store = ex.UnitStore(tmp_path, readonly=True)
    with pytest.raises(ex.MissingUnit, match="no file"):
        store.get("u", {"a": 1}, lambda: pytest.fail("a read-only store computed"))
    (tmp_path / "units").mkdir()
    path = tmp_path / "units" / "u.json"
    path.write_text(json.dumps({"settings": {"a": 2}, "result": {"x": 1}, "meta": {}}))
    with pytest.raises(ex.MissingUnit, match="other settings"):
        store.get("u", {"a": 1}, lambda: pytest.fail("a read-only store computed"))
    assert path.exists() and not list(tmp_path.glob("units/*.stale*"))   # left in place
    assert store.get("u", {"a": 2}, lambda: pytest.fail("computed")) == {"x": 1}
    with pytest.raises(PermissionError):
        store.put("v", {}, {}, 1.0)
    with pytest.raises(PermissionError):
        store.partial("u", {})


# --------------------------------------------------------------------------- complete
@pytest.mark.parametrize("form", [".json.gz", ".json", "both"])
@pytest.mark.parametrize("experiment", ["sensitivity", "mnist-schedules"])
def test_complete_equals_runner(full, tmp_path, experiment, form):
    """The same whichever form the unit files have (a legacy ``.json`` beside a ``.json.gz``
    is not read: it holds other settings here, and would be rejected if it were)."""
    s = _sens_settings() if experiment == "sensitivity" else _mnist_settings()
    root = _copy(full, tmp_path, experiment, form=form)
    units = ex.result_dir(root, experiment, "tiny") / "units"
    n_files = len(list(units.iterdir()))
    c = ex.committed(experiment, root=root, scale="tiny", s=s)
    p = c["progress"]
    assert p["complete"] and p["done"] == p["total"] == len(ex.unit_files(units))
    assert n_files == p["total"] * (2 if form == "both" else 1)
    assert c["rejected"] == []
    expect = _runner_result(root, experiment, s)
    got = dict(c["result"])
    if experiment == "mnist-schedules":
        assert got.pop("missing") == []
        assert p["seeds"] == {"online": [0, 1], "lrs_opt": [0, 1], "fixed": [0, 1],
                              "quality": [0], "noise": [0]}
    else:
        assert p["seeds"] == {"grid": [0, 1]}
    assert got == expect
    # the wall time is the sum of what the units recorded, per part
    walls = [ex.read_unit_file(f)["meta"]["wall_time_s"] for f in
             ex.unit_files(units).values()]
    assert c["wall_time_s"]["total"] == pytest.approx(sum(walls))
    assert sum(c["wall_time_s"]["parts"].values()) == pytest.approx(sum(walls))
    assert c["meta"]["commits"] and c["meta"]["threads"] == [1]
    assert c["meta"]["hardware"] and c["meta"]["elapsed_s"] >= 0


# --------------------------------------------------------------------------- partial
def test_partial_sensitivity_uses_complete_seeds_only(full, tmp_path):
    s = _sens_settings()
    units = ex.sensitivity.plan_units(s)
    seed1 = [u.name for u in units if u.settings["seed"] == 1]
    # seed 0 whole, seed 1 half done
    root = _copy(full, tmp_path, "sensitivity",
                 keep=lambda n: n not in seed1[len(seed1) // 2:])
    c = ex.committed("sensitivity", root=root, scale="tiny", s=s)
    assert c["progress"]["done"] == len(units) - (len(seed1) - len(seed1) // 2)
    assert c["progress"]["total"] == len(units) and not c["progress"]["complete"]
    assert c["progress"]["seeds"] == {"grid": [0]}
    assert c["result_settings"]["seeds"] == [0]
    assert c["result"] == _runner_result(root, "sensitivity", {**s, "seeds": [0]})
    claims = ex.sensitivity_claims(c["result"])
    for k in ("interior", "band", "auto", "flat"):
        assert claims[k]["v"] == ex.UNDECIDED and "1 seed" in claims[k]["why"]


def test_partial_mnist_lrs_opt_only(full, tmp_path):
    """The state a long run is in for hours: LRS-OPT seeds done, nothing else."""
    s = _mnist_settings()
    root = _copy(full, tmp_path, "mnist-schedules", keep=lambda n: n == "lrs_opt_seed0")
    c = ex.committed("mnist-schedules", root=root, scale="tiny", s=s)
    p = c["progress"]
    assert p["done"] == 1 and p["parts"]["lrs_opt"] == {"done": 1, "total": 2}
    assert p["seeds"] == {"online": [], "lrs_opt": [0], "fixed": [], "quality": [],
                          "noise": []}
    r = c["result"]
    assert list(r["lrs_opt"]) == ["0"] and r["fixed"] == {} and r["quality"] == {}
    assert r["noise"] == {} and p["parts"]["noise"] == {"done": 0, "total": 1}
    assert all(by_beta == {} for m in r["online"].values() for by_beta in m.values())
    assert "fixed_seed0" in r["missing"]
    claims = ex.mnist_claims(r)
    for k in ("c1", "c2", "c3", "c4", "c5", "c7"):
        assert claims[k]["v"] == ex.UNDECIDED and claims[k]["why"] == (
            "no online seed is complete"), k
    assert claims["c8"]["v"] == ex.UNDECIDED and "fixed-η" in claims["c8"]["why"]
    assert claims["c9"]["v"] == ex.UNDECIDED and claims["c9"]["why"]


def test_partial_mnist_online_without_lrs_opt_or_quality(full, tmp_path):
    s = _mnist_settings()
    online1 = [u.name for u in ex.mnist_schedules.online_units(s) if u.settings["seed"] == 1]
    root = _copy(full, tmp_path, "mnist-schedules",
                 keep=lambda n: not n.startswith(("lrs_opt", "quality"))
                 and n not in online1[:1])
    c = ex.committed("mnist-schedules", root=root, scale="tiny", s=s)
    assert c["progress"]["seeds"] == {"online": [0], "lrs_opt": [], "fixed": [0, 1],
                                      "quality": [], "noise": []}   # its LRS-OPT is missing
    r = c["result"]
    assert r["lrs_opt"] == {} and r["quality"] == {} and list(r["fixed"]) == ["0"]
    assert r["noise"] == {}
    assert all(list(by_beta) == ["0"] for m in r["online"].values()
               for by_beta in m.values())
    claims = ex.mnist_claims(r)
    assert claims["lrs"]["v_drop"] == ex.UNDECIDED
    assert claims["lrs"]["why"] == "no LRS-OPT seed is complete"
    assert claims["c7"]["why"] == claims["c8"]["why"] == "no LRS-OPT seed is complete"
    assert "1 online seed" in claims["c3"]["why"]


def test_empty(tmp_path):
    for experiment in ex.COMMITTED:
        c = ex.committed(experiment, root=tmp_path, scale="paper")
        assert c["result"] is None and c["progress"]["done"] == 0
        mod = ex.sensitivity if experiment == "sensitivity" else ex.mnist_schedules
        extra = 2 if experiment == "mnist-schedules" else 0   # paper: 1 quality, 1 noise seed
        assert c["progress"]["total"] == len(mod.plan_units(c["settings"])) + extra
        assert c["wall_time_s"]["total"] == 0 and c["meta"]["commits"] == []
    with pytest.raises(ValueError, match="experiment"):
        ex.committed("real-world", root=tmp_path)


# --------------------------------------------------------------------------- foreign files
def test_foreign_settings_file_is_reported_and_not_used(full, tmp_path):
    s = _sens_settings()
    root = _copy(full, tmp_path, "sensitivity")
    units = ex.result_dir(root, "sensitivity", "tiny") / "units"
    victim = ex.sensitivity.plan_units(s)[0].name           # a unit of seed 0
    victim_file = ex.unit_file(units, victim)
    data = ex.read_unit_file(victim_file)
    data["settings"]["T"] += 1
    write_unit_file(victim_file, data)
    (units / "not_a_unit.json").write_text("{truncated")
    (units / "sens_stray_seed9.json").write_text(json.dumps(data))
    before = sorted(p.name for p in units.iterdir())
    c = ex.committed("sensitivity", root=root, scale="tiny", s=s)
    reasons = {r["file"]: r["reason"] for r in c["rejected"]}
    assert "T: 7 (plan: 6)" in reasons[victim_file.name]
    assert reasons["not_a_unit.json"] == "not a unit file"
    assert reasons["sens_stray_seed9.json"] == "not a unit of the plan"
    # seed 0 is not complete any more: only seed 1 is used, and nothing was moved or written
    assert c["progress"]["seeds"] == {"grid": [1]} and c["result_settings"]["seeds"] == [1]
    assert c["progress"]["done"] == c["progress"]["total"] - 1
    assert sorted(p.name for p in units.iterdir()) == before


def test_noise_unit_of_other_settings_is_reported_and_not_used(full, tmp_path):
    s = _mnist_settings()
    root = _copy(full, tmp_path, "mnist-schedules")
    path = ex.unit_file(ex.result_dir(root, "mnist-schedules", "tiny"), "noise_seed0")
    data = ex.read_unit_file(path)
    assert data["settings"] == ex.mnist_schedules.noise_settings(s, 0)
    data["settings"]["draws"] += 1
    write_unit_file(path, data)
    c = ex.committed("mnist-schedules", root=root, scale="tiny", s=s)
    (why,) = [r["reason"] for r in c["rejected"] if r["file"] == path.name]
    assert why == f"other settings: draws: {s['noise']['draws'] + 1} (plan: {s['noise']['draws']})"
    assert c["progress"]["seeds"]["noise"] == [] and c["result"]["noise"] == {}
    assert c["progress"]["parts"]["noise"] == {"done": 0, "total": 1}


def test_in_progress_lrs_opt_is_counted_not_used(full, tmp_path):
    s = _mnist_settings()
    root = _copy(full, tmp_path, "mnist-schedules", keep=lambda n: n.startswith("fixed"))
    units = ex.result_dir(root, "mnist-schedules", "tiny") / "units"
    (units / "lrs_opt_seed1.partial.json").write_text(json.dumps({"iterations": 1}))
    c = ex.committed("mnist-schedules", root=root, scale="tiny", s=s)
    assert c["progress"]["in_progress"] == {"lrs_opt_seed1": 1}
    assert c["progress"]["parts"]["lrs_opt"]["done"] == 0 and c["result"] is None
    assert c["rejected"] == []
