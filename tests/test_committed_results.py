"""The paper-scale results committed under ``results/`` are honest: computed with today's
settings, and reproduced by today's code.

* Every committed unit file holds exactly the settings the current plan gives its name (a
  file from other settings fails, naming the difference), and nothing outside the plan.
* A spot check recomputes two randomly chosen committed online units (a T = 500 run each)
  with the current code and compares them with the stored numbers, so that a change to the
  algorithm that would invalidate the shipped results cannot land silently. A unit whose
  meta records its group (population and members, issue 25) is recomputed with its group and
  must be equal bit for bit on the same build (torch, CPU, threads); a unit without (the
  units committed before groups were recorded) is held to float32 rounding over its first
  steps (:func:`spot_compare`).

Without committed results (a fresh project) the checks have nothing to read: the first test
then says so by skipping, and the plan test still runs on the settings alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

import hypergrad.experiments as ex
from hypergrad.experiments import mnist_schedules, parallel, sensitivity
from hypergrad.experiments.store import unit_group
from tests.helpers import HAS_MNIST

ROOT = Path(__file__).resolve().parent.parent / "results"
MODULES = {"mnist-schedules": mnist_schedules, "sensitivity": sensitivity}


def _units_dir(experiment: str) -> Path:
    return ROOT / experiment / "paper" / "units"


def _unit_files(experiment: str) -> dict[str, Path]:
    """name -> the committed file of each finished unit (``.json.gz``, or legacy ``.json``)."""
    return ex.unit_files(_units_dir(experiment))


def _partial_files(experiment: str) -> list[Path]:
    """The committed LRS-OPT progress files (``<name>.partial.json``)."""
    folder = _units_dir(experiment)
    return sorted(folder.glob("*.partial.json")) if folder.is_dir() else []


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
    expected = {u.name: u.settings for u in MODULES[experiment].plan_units(s)}
    if experiment == "mnist-schedules":          # computed after the plan: LRS-OPT's noise
        expected |= {f"noise_seed{sd}": mnist_schedules.noise_settings(s, sd)
                     for sd in s["noise"]["seeds"]}
    return expected


def test_the_paper_plans_name_every_unit_once():
    for experiment, mod in MODULES.items():
        units = mod.plan_units(ex.settings(experiment, "paper"))
        names = [u.name for u in units]
        assert len(names) == len(set(names)), f"{experiment}: a unit name is used twice"
    s = ex.settings("sensitivity", "paper")
    assert len(sensitivity.plan_units(s)) == 2 * len(s["mus"]) * len(s["betas"]) * len(s["seeds"])


@pytest.mark.parametrize("experiment", list(MODULES))
def test_committed_units_hold_the_current_settings(experiment):
    units, partials = _unit_files(experiment), _partial_files(experiment)
    if not units and not partials:
        pytest.skip(f"no paper-scale {experiment} units committed under {ROOT}")
    expected = _expected_settings(experiment)
    s = ex.settings(experiment, "paper")
    problems = [f"{name}: committed twice, as .json.gz and as .json (the .json is not read)"
                for name in units if (_units_dir(experiment) / f"{name}.json").exists()
                and units[name].name.endswith(".json.gz")]
    files = [(f.name[:-len(".partial.json")], f) for f in partials] + list(units.items())
    for name, f in files:
        if f.name.endswith(".partial.json"):                  # LRS-OPT in progress
            data = json.loads(f.read_text())
            found = (data.get("settings") or {}).get("unit")
        else:
            data = ex.read_unit_file(f)
            assert data is not None, f"{f.name}: cannot be read"
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


def test_committed_noise_units_read_the_committed_lrs_opt_schedule():
    """A noise unit is too long to recompute here (about 12 min at paper scale); what can be
    checked cheaply is checked: its draws, its lengths, and that the schedule it smoothed is
    the committed LRS-OPT schedule of its seed (its centred mean, to float32 rounding)."""
    s = ex.settings("mnist-schedules", "paper")
    files = _unit_files("mnist-schedules")
    names = [f"noise_seed{sd}" for sd in s["noise"]["seeds"] if f"noise_seed{sd}" in files]
    if not names:
        pytest.skip(f"no paper-scale noise unit committed under {ROOT}")
    for name in names:
        seed = int(name.removeprefix("noise_seed"))
        out = ex.read_unit_file(files[name])["result"]
        lrs = ex.read_unit_file(files[f"lrs_opt_seed{seed}"])["result"]["lrs"]
        T, k = s["T"], s["noise"]["draws"]
        for key in ("start", "final"):
            assert len(out[key]["f_T"]) == k and out[key]["draws"] == k, (name, key)
            assert len(out[key]["mean"]) == len(out[key]["sd"]) == T, (name, key)
            assert min(out[key]["sd"]) >= 0, (name, key)
        sm = out["smoothed"]
        np.testing.assert_allclose(sm["lr"], ex.centred_mean(lrs, s["noise"]["window"]),
                                   rtol=1e-6, atol=1e-9, err_msg=name)
        # the final schedule's f_T is computed twice (with and without its hypergradient)
        np.testing.assert_allclose(sm["final_val_loss"], out["final"]["f_T"], rtol=1e-5,
                                   err_msg=name)
        assert all(len(sm[f"{a}_{b}"]) == k for a in ("final", "smoothed")
                   for b in ("val_loss", "val_acc"))


def _online_units() -> list[tuple[str, object, Path]]:
    out = []
    for experiment, mod in MODULES.items():
        files = _unit_files(experiment)
        for u in mod.plan_units(ex.settings(experiment, "paper")):
            if u.batch is not None and u.name in files and not ex.read_unit_file(
                    files[u.name])["result"]["diverged"]:
                out.append((experiment, u, files[u.name]))
    return out


#: the steps over which a recomputed run must follow the stored one to float32 rounding. A
#: float32 network's trajectory is chaotic: rounding differences (another thread count,
#: another CPU's kernels) grow until the runs part. Measured on the committed units with 2
#: threads against the stored 1-thread runs: the most sensitive one found (Appendix C,
#: μ = 0.99, β = 1e-3) kept its η_t within 1e-6 for 31 steps, 1e-4 for 54, and parted after
#: 65; a calmer one (μ = 0.9, β = 1e-4) stayed within 6e-4 for all 500.
SPOT_STEPS = 20


def spot_compare(got: dict, stored: dict, where: str) -> int | None:
    """Assert what must hold anywhere (the unit's keys and its first ``SPOT_STEPS`` learning
    rates to float32 rounding); return ``None`` when the whole run agrees to rounding (the
    schedule, the outcome, the final metrics), else the step where the runs part."""
    assert set(got) == set(stored), where
    lr_got, lr_stored = np.array(got["lr"], float), np.array(stored["lr"], float)
    k = min(SPOT_STEPS, len(lr_stored))
    assert len(lr_got) >= k, f"{where}: diverged at step {got['diverged_at']}"
    np.testing.assert_allclose(lr_got[:k], lr_stored[:k], rtol=1e-4, atol=1e-9,
                               err_msg=f"{where}: the first {k} learning rates")
    n = min(len(lr_got), len(lr_stored))
    off = np.abs(lr_got[:n] - lr_stored[:n]) > 1e-4 * np.abs(lr_stored[:n]) + 1e-7
    if off.any():
        return int(np.argmax(off))
    same = len(lr_got) == len(lr_stored) and got["diverged"] == stored["diverged"] and all(
        (got[m] is None and stored[m] is None) or (None not in (got[m], stored[m]) and
                                                   math.isclose(got[m], stored[m], rel_tol=1e-4,
                                                                abs_tol=2e-3))
        for m in ("val_loss", "val_acc", "test_acc"))
    return None if same else n


def spot_check(experiment: str, s: dict, unit, data: dict, task) -> tuple[int | None, dict]:
    """Recompute ``unit`` (its file's content ``data``) as its meta says it was computed
    (:func:`~hypergrad.experiments.parallel.recompute_unit`: with its group, or alone when the
    grouping is not recorded) and compare. A recorded group on the same build
    (:func:`~hypergrad.experiments.parallel.same_build`) must give the stored result bit for
    bit; otherwise :func:`spot_compare`'s tolerance applies. Returns ``(part, recomputed)``:
    ``part`` is ``None`` or the step where the runs part (:func:`spot_compare`)."""
    group = unit_group(data)
    got = parallel.recompute_unit(experiment, s, unit, group, task)
    where = f"{experiment} unit {unit.name}"
    if group is not None and parallel.same_build(data["meta"]):
        assert got == data["result"], (f"{where}: recomputed with its group "
                                       f"{group['members']} on the build that stored it, and "
                                       f"not the same bit for bit")
        return None, got
    return spot_compare(got, data["result"], where), got


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_the_spot_check_recomputes_a_grouped_unit_bit_for_bit(one_thread, tmp_path):
    """A unit that records its group is recomputed with it, bit for bit on the same build;
    one number changed in its file is caught (where the tolerance would let it pass)."""
    s = ex.settings("sensitivity", "tiny")
    ex.run("sensitivity", s, out_dir=tmp_path, progress=False, population=4)
    task = mnist_schedules.MnistTask(s, "cpu")
    plan = sensitivity.plan_units(s)
    for unit in (plan[1], plan[-2]):
        data = ex.read_unit_file(ex.unit_file(tmp_path, unit.name))
        assert unit_group(data)["population"] == 4
        assert spot_check("sensitivity", s, unit, data, task)[0] is None
        data["result"]["lr"][-1] = data["result"]["lr"][-1] * (1 + 1e-7)
        assert spot_compare(parallel.recompute_unit("sensitivity", s, unit, unit_group(data),
                                                    task), data["result"], unit.name) is None
        with pytest.raises(AssertionError, match="bit for bit"):
            spot_check("sensitivity", s, unit, data, task)


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_the_spot_check_catches_a_changed_algorithm(one_thread):
    """The comparison fails when the computation changes (β one percent larger stands for any
    change to Algorithm 1), and passes a run against itself recomputed."""
    s = ex.settings("sensitivity", "tiny")
    s["T"] = 30
    task = mnist_schedules.MnistTask(s, "cpu")
    unit = next(u for u in sensitivity.plan_units(s) if u.batch["mu"] == 0.0)
    stored = ex._jsonable(sensitivity.compute_unit(task, s, unit))
    again = ex._jsonable(sensitivity.compute_unit(task, s, unit))
    assert spot_compare(again, stored, unit.name) is None
    changed = dataclasses.replace(unit, batch={**unit.batch, "beta": unit.batch["beta"] * 1.01})
    other = ex._jsonable(sensitivity.compute_unit(task, s, changed))
    with pytest.raises(AssertionError, match="first"):
        spot_compare(other, stored, unit.name)


@pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")
def test_two_random_committed_online_units_are_reproduced_by_todays_code(one_thread):
    """Recompute two committed online units chosen at random among the runs that did not
    diverge (a different pair on each run, so that over many runs every unit gets checked;
    ``HYPERGRAD_SPOT_SEED`` fixes the pair), a T = 500 run each, and compare
    (:func:`spot_check`): a unit whose file records its group is recomputed with it and must
    be equal bit for bit on the same build; one without a recorded group (every unit
    committed before issue 25) is recomputed alone and held to :func:`spot_compare`.

    What must hold anywhere: the first ``SPOT_STEPS`` learning rates to float32 rounding
    (rtol 1e-4), and the unit's keys. A change to Algorithm 1, to the task, the data or the
    seeds moves η_t within those steps. Beyond them a float32 run is chaotic (see
    ``SPOT_STEPS``), so the rest of the run — the whole schedule and the final metrics — is
    compared and reported. Where the runs part, the test says at which step, as a warning,
    and does not fail on it. That happens on other machine kinds and thread counts, and on
    this one too: the units were computed in populations, several runs batched together,
    and this recomputes one run alone. The CI of 2026-11-30 saw two units part at steps 230
    and 275 of 500, with the same final accuracy; earlier pairs agreed over all 500."""
    units = _online_units()
    if not units:
        pytest.skip(f"no paper-scale online units committed under {ROOT}")
    rng = random.Random(os.environ.get("HYPERGRAD_SPOT_SEED"))
    picked = rng.sample(units, min(2, len(units)))
    for experiment, unit, path in picked:
        data = ex.read_unit_file(path)
        stored = data["result"]
        s = ex.settings(experiment, "paper")
        task = mnist_schedules.MnistTask(s, "cpu")
        where = f"{experiment} unit {unit.name}"
        group = unit_group(data)
        exact = group is not None and parallel.same_build(data["meta"])
        part, got = spot_check(experiment, s, unit, data, task)
        print(f"spot check: {where}: " + (
            f"recomputed with its group (population {group['population']}), bit for bit"
            if exact else f"grouping {'not recorded' if group is None else 'recorded, other build'}; "
            f"first {SPOT_STEPS} steps agree; whole run "
            + ("agrees to float32 rounding" if part is None else f"parts at step {part}")))
        if part is not None:
            warnings.warn(f"{where}: the recomputed run parts from the stored one at step "
                          f"{part} (rounding grown by a chaotic trajectory on this machine: "
                          f"val_acc {got['val_acc']} against {stored['val_acc']})",
                          stacklevel=1)
