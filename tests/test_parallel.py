"""Worker processes and the engine choice (hypergrad.experiments.parallel): whichever way the
units are computed, they are the units one process computes."""

from __future__ import annotations

import numpy as np
import pytest

import hypergrad.experiments as ex
from hypergrad.experiments import mnist_schedules, parallel, sensitivity
from hypergrad.experiments.store import Unit
from tests.helpers import needs_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


def _results(folder):
    return {name: ex.read_unit_file(f)["result"] for name, f in ex.unit_files(folder).items()}


def _assert_same_units(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        for k, v in a[name].items():
            w = b[name][k]
            if isinstance(v, list) and v and isinstance(v[0], float):
                np.testing.assert_allclose(v, w, rtol=1e-6, atol=1e-9, err_msg=f"{name}.{k}")
            elif isinstance(v, float):
                assert v == pytest.approx(w, rel=1e-6, abs=1e-9), f"{name}.{k}"
            else:
                assert v == w, f"{name}.{k}"


@needs_mnist
def test_two_workers_store_the_units_one_process_stores(tmp_path):
    s = ex.settings("sensitivity", "tiny")
    info = parallel.run_in_workers("sensitivity", s, tmp_path / "w", workers=2, threads=1,
                                   population=1, progress=False)
    assert info["units"] == len(sensitivity.plan_units(s)) and info["workers"] == 2
    assert parallel.pending_units("sensitivity", s, tmp_path / "w") == []
    ex.run("sensitivity", s, out_dir=tmp_path / "one", progress=False)
    _assert_same_units(_results(tmp_path / "w" / "units"), _results(tmp_path / "one" / "units"))
    # a second call finds nothing to do
    again = parallel.run_in_workers("sensitivity", s, tmp_path / "w", workers=2, progress=False)
    assert again["units"] == 0


@needs_mnist
def test_workers_compute_every_planned_unit_of_section_5(tmp_path):
    s = ex.settings("mnist-schedules", "tiny")
    plan = mnist_schedules.plan_units(s)
    kinds = [u.compute[0] for u in plan]
    n_fixed = kinds.count("fixed")
    assert kinds[:n_fixed] == ["fixed"] * n_fixed and kinds[n_fixed] == "lrs_opt"
    parallel.run_in_workers("mnist-schedules", s, tmp_path, workers=2, population=4,
                            progress=False)
    stored = set(ex.unit_files(tmp_path))
    assert stored == {u.name for u in plan}
    # the runner loads them all and computes only what depends on them (quality, noise)
    res = ex.run("mnist-schedules", s, out_dir=tmp_path, progress=False)
    assert res["units"]["computed"] == len(s["quality"]["seeds"]) + len(s["noise"]["seeds"])
    assert res["units"]["loaded"] == len(plan)


def test_jobs_batch_only_the_units_that_allow_it():
    def u(name, batch):
        return Unit(name, {}, ("x",), {"seed": 0} if batch else None)

    units = [u("a", False), u("b", True), u("c", True), u("d", True), u("e", False)]
    jobs = parallel._jobs(units, 2)
    assert [[x.name for x in j] for j in jobs] == [["a"], ["b", "c"], ["e"], ["d"]]
    assert [[x.name for x in j] for j in parallel._jobs(units, 1)] == [[x] for x in "abcde"]


@needs_mnist
def test_a_failing_worker_is_reported_not_hidden(tmp_path):
    s = ex.settings("sensitivity", "tiny")
    s["n_train"] = 10 ** 6                   # more images than MNIST's test set holds
    with pytest.raises(RuntimeError, match="worker"):
        parallel.run_in_workers("sensitivity", s, tmp_path, workers=2, progress=False)


@needs_mnist
def test_choose_population_measures_each_candidate():
    task = mnist_schedules.MnistTask(ex.settings("sensitivity", "tiny"), "cpu")
    n, rates = parallel.choose_population(task, (1, 4), steps=2)
    assert n in (1, 4) and set(rates) == {1, 4}
    assert all(r > 0 for r in rates.values()) and rates[n] == max(rates.values())


def test_cli_engine_options_are_checked(capsys):
    for argv in (["real-world", "--workers", "2"], ["real-world", "--population", "8"],
                 ["sensitivity", "--workers", "0"], ["sensitivity", "--population", "x"]):
        with pytest.raises(SystemExit) as e:
            ex.main([*argv, "--print-settings"])
        assert e.value.code == 2, argv
    assert "--workers" in capsys.readouterr().err
    assert ex.main(["sensitivity", "--workers", "auto", "--population", "1",
                    "--print-settings"]) == 0
    assert parallel.usable_cores() >= 1
