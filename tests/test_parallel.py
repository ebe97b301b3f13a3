"""Worker processes and the engine choice (hypergrad.experiments.parallel): whichever way the
units are computed, they are the units one process computes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    jobs = parallel._jobs(units, 2)      # the plan's groups, each where its first member is
    assert [[x.name for x in j] for j in jobs] == [["a"], ["b", "c"], ["d"], ["e"]]
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


# ------------------------------------------------------------ issue 25: stopping a sweep
def _group(pgid: int) -> list[int]:
    """The live processes of the process group ``pgid`` (zombies, which compute nothing, are
    left out: the container's init may be slow to reap them)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:                    # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            found.append(int(d))
    return found


def _sweep(out: Path) -> list[str]:
    """A tiny sensitivity sweep in 2 workers, slow enough (8 units of ~1 s) to be stopped in
    the middle."""
    return [sys.executable, "-m", "hypergrad.experiments", "sensitivity", "--scale", "tiny",
            "--out", str(out), "--workers", "2", "--population", "1", "--no-progress",
            "--seeds", "1", "--set", "T=600"]


def _stop_in_the_middle(out: Path, signum: int, env: dict, total: int) -> str:
    """Start :func:`_sweep`, send ``signum`` to the driver alone (as ``kill`` does) once its
    first unit is stored, and check that within 10 s no process it started is left, that it
    stored fewer than ``total`` units and no temporary or half-written file. Returns the
    driver's stderr."""
    units = out / "sensitivity" / "tiny" / "units"
    driver = subprocess.Popen(_sweep(out), env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (units.is_dir() and any(n.endswith(".json.gz") for n in os.listdir(units))):
            assert driver.poll() is None, driver.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no unit stored in 180 s"
            time.sleep(0.02)
        assert len(_group(driver.pid)) >= 3          # the driver and its two workers
        driver.send_signal(signum)
        deadline = time.monotonic() + 10
        _, err = driver.communicate(timeout=30)      # (the old workers held its stderr open)
        while (alive := _group(driver.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == [], f"still running 10 s after {signal.Signals(signum).name}: {alive}"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)     # whatever the old code left running
        except ProcessLookupError:
            pass
        driver.wait()
    stored = ex.unit_files(out / "sensitivity" / "tiny")
    assert len(stored) < total, "the workers went on storing units after the signal"
    names = os.listdir(units)
    assert [n for n in names if "tmp" in n] == []
    assert set(names) == {f.name for f in stored.values()}       # units only, none set aside
    assert all(isinstance(ex.read_unit_file(f)["result"], dict) for f in stored.values())
    if signum != signal.SIGKILL:
        assert driver.returncode == 128 + signum, err[-2000:]
        assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    return err


_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


@needs_mnist
@_PROC
def test_sigterm_stops_every_worker_and_the_next_run_resumes(tmp_path):
    """``kill <driver>`` (SIGTERM, what ``timeout`` and job schedulers send) used to end the
    driver only: its workers and the resource tracker, re-parented to init, went on computing
    and writing units. Now every process the driver started ends within seconds, no unit or
    temporary file is left half-written, and the next run computes only the missing units."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    total = len(sensitivity.plan_units(ex.settings("sensitivity", "tiny") | {"seeds": [0]}))
    _stop_in_the_middle(tmp_path, signal.SIGTERM, env, total)
    before = {name: f.stat().st_mtime_ns
              for name, f in ex.unit_files(tmp_path / "sensitivity" / "tiny").items()}
    assert before

    again = subprocess.run(_sweep(tmp_path), env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    counts = re.search(r"(\d+) units computed, (\d+) loaded", again.stdout)
    assert counts and (int(counts[1]), int(counts[2])) == (total - len(before), len(before))
    after = ex.unit_files(tmp_path / "sensitivity" / "tiny")
    assert len(after) == total
    assert {name: after[name].stat().st_mtime_ns for name in before} == before  # not redone


@needs_mnist
@_PROC
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_sigint_or_a_killed_driver_stops_every_worker(tmp_path, signum):
    """``kill -INT`` is handled as SIGTERM is; a driver killed outright (SIGKILL: it can do
    nothing) leaves workers that notice it is gone and stop within seconds."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    total = len(sensitivity.plan_units(ex.settings("sensitivity", "tiny") | {"seeds": [0]}))
    _stop_in_the_middle(tmp_path, signum, env, total)


def test_stop_on_signals_raises_stopped_once_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(parallel.Stopped) as info, parallel.stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                            # the handler raises before this ends
        finally:
            os.kill(os.getpid(), signal.SIGINT)      # a second signal while stopping: ignored
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before
