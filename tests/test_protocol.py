"""The protocol study (``mnist-protocol``): its plan, each family's run, κ's decimation."""

import pytest
import torch

from hypergrad.experiments.mnist_schedules import MnistTask
from hypergrad.experiments.protocol import (
    compute_unit,
    decimate,
    family_units,
    plan_units,
    run_mnist_protocol,
)
from hypergrad.experiments.settings import settings
from hypergrad.experiments.store import UnitStore, float32_trace
from hypergrad.loop import run_online
from hypergrad.online import Marthe


@pytest.fixture(scope="module")
def tiny():
    s = settings("mnist-protocol", "tiny")
    return s, MnistTask(s, "cpu")


def test_the_plan_is_whole_seeds_family_by_family_and_every_name_once():
    s = settings("mnist-protocol", "paper")
    units = plan_units(s)
    names = [u.name for u in units]
    assert len(set(names)) == len(names)
    assert all(u.batch is None for u in units)          # each unit runs alone
    fam = [u.settings["family"] + (f"-{u.name.split('_')[1]}" if u.name.startswith("authors")
                                   else "") for u in units]
    # families in the settings' order, each one contiguous, every seed of one before the next
    firsts = sorted(set(fam), key=fam.index)
    assert firsts == s["families"]
    assert [fam.index(f) for f in firsts] == sorted(fam.index(f) for f in firsts)
    assert all(fam[i] == fam[i + 1] or fam[i + 1] not in fam[:i + 1] for i in range(len(fam) - 1))
    # the authors' runs with the release's clip for every seed, then the book's grid completed
    n_k = len(s["authors"]["kappas"])
    clips = [u.settings["clip"] for u in units if u.settings["family"] == "authors"]
    n_free = len(s["authors"]["noclip_kappas"])
    assert clips == [100.0] * n_k * len(s["seeds"]) + [None] * n_free * len(s["seeds"])
    assert units[n_k * len(s["seeds"])].settings["family"] == "extend"
    # seeds ascend within each part: the first part's seed 0 is whole before seed 1 starts
    first = [u.settings["seed"] for u in units[:2 * n_k]]
    assert first == [0] * n_k + [1] * n_k
    a = units[0].settings
    assert (a["beta"], a["mu"], a["lr0"], a["val_batch"]) == (1e-8, "auto", 0.0, None)


def test_an_authors_unit_is_marthe_with_the_release_settings(tiny):
    s, task = tiny
    unit = family_units(s, "authors-clip100", 0)[-1]          # the largest κ, clipped
    u = unit.settings
    got = compute_unit(task, s, unit)
    tuner = Marthe(task.dyn, lr=0.0, beta=1e-8, mu="auto", kappa=u["kappa"], clip=100.0)
    infos = []
    ostate, _ = run_online(tuner, task.init_params(0), task.batches(0), task.objective,
                           callback=lambda _, i: infos.append(i))
    assert got["lr"] == float32_trace([float(i.lr) for i in infos])
    assert got["beta"] == float32_trace([float(i.beta) for i in infos])
    assert got["val_acc"] == task.evaluate(tuner.params(ostate))["val_acc"]
    assert got["kappa"] == u["kappa"] and "hypergradient" not in got


def test_validation_minibatches_are_fresh_fixed_and_change_the_run(tiny):
    s, task = tiny
    (unit,) = family_units(s, "valbatch", 0)
    assert unit.settings["val_batch"] == s["valbatch"]["size"] == 20
    a, b = compute_unit(task, s, unit), compute_unit(task, s, unit)
    assert a == b                                            # the same draws each time
    full = {**unit.settings, "val_batch": None}
    c = compute_unit(task, s, type(unit)(unit.name, full, unit.compute))
    assert a["lr"] != c["lr"]            # E on 20 of the 100 images moves η otherwise


def test_decimation_reads_the_first_run_that_trains_from_the_top():
    runs = {1e-9: {"diverged": False, "x": 1}, 1e-8: {"diverged": False, "x": 2},
            1e-7: {"diverged": True}, 1e-6: {"diverged": True}}
    assert decimate(runs) == (1e-8, {"diverged": False, "x": 2})
    assert decimate({1e-5: {"diverged": True}}) == (None, None)


def test_the_sweep_resumes_and_a_read_only_store_computes_nothing(tmp_path, tiny):
    s, _ = tiny
    s = {**s, "families": ["extend", "mu0.999"]}
    first = run_mnist_protocol(s, tmp_path, progress=False)
    assert first["units"] == {"computed": 2, "loaded": 0}
    again = run_mnist_protocol(s, tmp_path, progress=False)
    assert again["units"] == {"computed": 0, "loaded": 2} and again["runs"] == first["runs"]
    ro = run_mnist_protocol({**s, "seeds": [0, 1]}, progress=False,
                            store=UnitStore(tmp_path, readonly=True))
    assert sorted(ro["runs"]) == sorted(first["runs"])
    assert ro["missing"] == ["online_hd_beta0.03_seed1", "online_marthe-mu0.999_beta0.001_seed1"]
    assert all(isinstance(v, float) for r in ro["runs"].values() for v in r["lr"])
    assert torch.isfinite(torch.tensor(first["runs"]["online_hd_beta0.03_seed0"]["lr"])).all()


def test_the_books_reading_below_its_grid_decimates_kappa_per_run(tiny):
    s, task = tiny
    (unit,) = family_units(s, "extend-marthe", 0)
    u = unit.settings
    assert (u["method"], u["mu"], u["kappa_start"]) == ("marthe", "auto", 0.1)
    got = compute_unit(task, s, unit)
    assert got["kappa_tries"] >= 1 and "beta" in got
    # the κ it kept is the first from 0.1 down, by tenths, whose run did not diverge
    assert got["kappa"] == pytest.approx(0.1 / 10 ** (got["kappa_tries"] - 1))
    assert not got["diverged"]
