"""The paper-scale results committed under ``results/`` are honest: computed with today's
settings, and reproduced by today's code.

* Every committed unit file holds exactly the settings the current plan gives its name (a
  file from other settings fails, naming the difference), and nothing outside the plan.
* A spot check recomputes two randomly chosen committed online units (a T = 500 run each)
  with the current code and compares them with the stored numbers, so that a change to the
  algorithm that would invalidate the shipped results cannot land silently.

Without committed results (a fresh project) the checks have nothing to read: the first test
then says so by skipping, and the plan test still runs on the settings alone.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest

import hypergrad.experiments as ex
from hypergrad.experiments import mnist_schedules, sensitivity
from tests.helpers import HAS_MNIST

ROOT = Path(__file__).resolve().parent.parent / "results"
MODULES = {"mnist-schedules": mnist_schedules, "sensitivity": sensitivity}


def _unit_files(experiment: str) -> list[Path]:
    folder = ROOT / experiment / "paper" / "units"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _diff(a, b, path="") -> list[str]:
    """The paths where two JSON values differ, e.g. ``['T: 500 != 100']``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}{k}: missing in the file" for k in b if k not in a]
        out += [f"{path}{k}: not a setting today" for k in a if k not in b]
        for k in a:
            if k in b:
                out += _diff(a[k], b[k], f"{path}{k}.")
        return out
    if a != b:
        return [f"{path.rstrip('.')}: {json.dumps(a)} in the file, {json.dumps(b)} today"]
    return []


def _expected_settings(experiment: str) -> dict:
    """name -> settings of every unit the current paper-scale plan can write."""
    s = ex.settings(experiment, "paper")
    return {u.name: u.settings for u in MODULES[experiment].plan_units(s)}


def test_the_paper_plans_name_every_unit_once():
    for experiment, mod in MODULES.items():
        units = mod.plan_units(ex.settings(experiment, "paper"))
        names = [u.name for u in units]
        assert len(names) == len(set(names)), f"{experiment}: a unit name is used twice"
    s = ex.settings("sensitivity", "paper")
    assert len(sensitivity.plan_units(s)) == 2 * len(s["mus"]) * len(s["betas"]) * len(s["seeds"])


@pytest.mark.parametrize("experiment", list(MODULES))
def test_committed_units_hold_the_current_settings(experiment):
    files = _unit_files(experiment)
    if not files:
        pytest.skip(f"no paper-scale {experiment} units committed under {ROOT}")
    expected = _expected_settings(experiment)
    s = ex.settings(experiment, "paper")
    problems = []
    for f in files:
        data = json.loads(f.read_text())
        if f.name.endswith(".partial.json"):                  # LRS-OPT in progress
            name = f.name[:-len(".partial.json")]
            found = (data.get("settings") or {}).get("unit")
        else:
            name = f.stem
            found = data.get("settings")
            assert set(data) == {"settings", "result", "meta"}, f"{f.name}: not a unit file"
            meta = data["meta"]
            assert meta.get("commit") and meta.get("wall_time_s") is not None, (
                f"{f.name}: the commit or wall time that produced it is missing")
        if name.startswith("quality_seed"):                    # depends on the online results
            want = {**mnist_schedules._task_settings(s), "fixed_lr": s["fixed_lr"],
                    "lr0": s["lr0"], "replay_mus": s["quality"]["replay_mus"],
                    "methods": list(mnist_schedules._method_specs(s)),
                    "kappa_start": s["online"]["kappa_start"]}
            found = {k: v for k, v in found.items() if k not in ("seed", "betas")}
        elif name not in expected:
            problems.append(f"{f.name}: no unit of that name in today's plan")
            continue
        else:
            want = expected[name]
        problems += [f"{f.name}: {d}" for d in _diff(found, want)]
    assert not problems, "committed results from other settings:\n" + "\n".join(problems[:20])


def _online_units() -> list[tuple[str, object, Path]]:
    out = []
    for experiment, mod in MODULES.items():
        files = {f.stem: f for f in _unit_files(experiment)}
        for u in mod.plan_units(ex.settings(experiment, "paper")):
            if u.batch is not None and u.name in files and not json.loads(
                    files[u.name].read_text())["result"]["diverged"]:
                out.append((experiment, u, files[u.name]))
    return out


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_two_random_committed_online_units_are_reproduced_by_todays_code(one_thread):
    """Recompute two committed online units chosen at random among the runs that did not
    diverge (a different pair on each run, so that over many runs every unit gets checked;
    ``HYPERGRAD_SPOT_SEED`` fixes the pair) and compare: same outcome, the schedule and final
    metrics to float32 rounding. (A run that diverged is left out: on another CPU, rounding
    may move the step at which a run on the edge of stability blows up.) The units were
    computed by single-thread workers; one thread here too."""
    units = _online_units()
    if not units:
        pytest.skip(f"no paper-scale online units committed under {ROOT}")
    rng = random.Random(os.environ.get("HYPERGRAD_SPOT_SEED"))
    picked = rng.sample(units, min(2, len(units)))
    for experiment, unit, path in picked:
        stored = json.loads(path.read_text())["result"]
        s = ex.settings(experiment, "paper")
        mod = MODULES[experiment]
        task = mnist_schedules.MnistTask(s, "cpu")
        got = json.loads(json.dumps(ex._jsonable(mod.compute_unit(task, s, unit))))
        where = f"{experiment} unit {unit.name}"
        print(f"spot check: {where}")
        assert got["diverged"] == stored["diverged"], where
        assert got["diverged_at"] == stored["diverged_at"], where
        assert set(got) == set(stored), where
        lr_got, lr_stored = np.array(got["lr"], float), np.array(stored["lr"], float)
        assert lr_got.shape == lr_stored.shape, where
        # float32 rounding, grown over 500 steps of a float32 network: 1e-4 relative
        np.testing.assert_allclose(lr_got, lr_stored, rtol=1e-4, atol=1e-7, err_msg=where)
        for k in ("val_loss", "val_acc", "test_acc"):
            if stored[k] is None:
                assert got[k] is None, where
            else:
                assert math.isclose(got[k], stored[k], rel_tol=1e-4, abs_tol=2e-3), (where, k)
