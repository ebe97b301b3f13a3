"""``--executor ray`` (hypergrad.experiments.parallel.run_on_ray) on a local Ray instance: the same
units as the local executor, bit for bit; a task whose worker is killed is retried and its
units whole; a stopped sweep resumes, with either executor, without computing a finished
unit again; failures are named at the end."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hypergrad.experiments as ex
from hypergrad.experiments import mnist_schedules, parallel, sensitivity
from hypergrad.experiments.store import compute_batched, unit_group
from tests.helpers import HAS_MNIST

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY or not HAS_MNIST,
                               reason="ray is not installed (pip install marthe-hypergrad[ray])"
                               if not HAS_RAY else "MNIST files not found in $HYPERGRAD_DATA")
N = 4


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of 2 CPUs for the module, started quietly (no dashboard, no
    worker logs, token authentication off so that no token file is written in the home
    folder, its session files in a temporary folder removed at the end), and shut down. Its
    workers see ``HYPERGRAD_FAULT_DIR``, the folder of the planted faults."""
    if not HAS_RAY or not HAS_MNIST:
        pytest.skip("ray is not installed (pip install marthe-hypergrad[ray])" if not HAS_RAY
                    else "MNIST files not found in $HYPERGRAD_DATA")
    import ray

    session = tempfile.mkdtemp(prefix="hgray")            # short: Ray's sockets live there
    faults = Path(session) / "faults"
    faults.mkdir()
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "HYPERGRAD_FAULT_DIR": str(faults)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=True, logging_level="ERROR",
                 _temp_dir=str(Path(session) / "ray"))
        yield faults
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(session, ignore_errors=True)


@pytest.fixture(scope="module")
def local_units(tmp_path_factory):
    """The tiny sweep by the local executor (in this process, one thread, population N)."""
    out = tmp_path_factory.mktemp("local")
    ex.run("sensitivity", ex.settings("sensitivity", "tiny"), out_dir=out, progress=False,
           population=N)
    return _files(out), json.loads((out / "results.json").read_text())


def _files(folder) -> dict:
    return {name: ex.read_unit_file(f) for name, f in ex.unit_files(folder).items()}


def _assert_same(files: dict, reference: dict):
    assert set(files) == set(reference)
    for name, data in files.items():
        assert data["result"] == reference[name]["result"], name              # bit for bit
        assert unit_group(data) == unit_group(reference[name]), name


@needs_ray
def test_a_tiny_sweep_on_ray_equals_the_local_executors(ray_instance, local_units, tmp_path):
    """Through the command line (which joins the instance this process runs): every unit file
    holds the local executor's result bit for bit and the same group, and results.json is
    assembled from them as the local executor's is."""
    files, results = local_units
    assert ex.main(["sensitivity", "--scale", "tiny", "--out", str(tmp_path), "--executor",
                    "ray", "--population", str(N), "--no-progress"]) == 0
    out = tmp_path / "sensitivity" / "tiny"
    _assert_same(_files(out), files)
    got = json.loads((out / "results.json").read_text())
    assert got["panels"] == results["panels"]
    assert got["units"] == {"computed": len(files), "loaded": 0}
    assert got["meta"]["executor"] == "ray" and got["meta"]["parallel"]["tasks"] == len(files) // N


@needs_ray
def test_a_killed_worker_is_retried_and_its_units_are_whole(ray_instance, local_units,
                                                              tmp_path):
    """The first task kills its own worker process (SIGKILL) once its group is computed,
    before storing it: Ray runs the task again, and every unit is stored once, whole, equal
    to the local executor's."""
    (ray_instance / "kill-once").touch()
    s = ex.settings("sensitivity", "tiny")
    info = parallel.run_on_ray("sensitivity", s, tmp_path, population=N, progress=False)
    assert (ray_instance / "killed").exists(), "no task was killed"
    (ray_instance / "killed").unlink()
    assert info["units"] == len(local_units[0])
    assert not [p for p in (tmp_path / "units").iterdir() if p.name.endswith(".tmp")]
    _assert_same(_files(tmp_path), local_units[0])


@needs_ray
def test_a_stopped_sweep_resumes_with_either_executor_and_recomputes_nothing(
        ray_instance, tmp_path, monkeypatch):
    """Started by the local executor (two groups of 2), continued on Ray and stopped by
    SIGTERM once a group more is stored (its tasks cancelled, the Ray instance it did not
    start left running), then finished on Ray: each start stores only what is pending, the
    files stored before a start are not rewritten, and the result is the uninterrupted local
    sweep's, bit for bit."""
    import ray

    n = 2                                 # 8 groups: the sweep is far from done when stopped
    s = ex.settings("sensitivity", "tiny")
    ex.run("sensitivity", s, out_dir=tmp_path / "whole", progress=False, population=n)
    plan = sensitivity.plan_units(s)
    out = tmp_path / "part"
    parallel.check_population("sensitivity", s, out, n)
    task = mnist_schedules.MnistTask(s, "cpu")
    compute_batched(task, plan[:2 * n], ex.UnitStore(out), n,
                    lambda u, r: sensitivity.finish_unit(s, u, r))
    units = out / "units"

    def snapshot():
        return {p.name: p.read_bytes() for p in units.glob("*.json.gz")}

    first = snapshot()
    assert len(first) == 2 * n
    shown = parallel._postfix

    def stop_at_the_first_group_done(bar, names, ok=True):
        # the driver reports a finished group here, inside its signal handlers: SIGTERM now
        # stops it deterministically (a signal from a timer thread could arrive after the
        # sweep had ended, where Ray's own handler would end the test process)
        shown(bar, names, ok)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(parallel, "_postfix", stop_at_the_first_group_done)
    with pytest.raises(parallel.Stopped):
        parallel.run_on_ray("sensitivity", s, out, population=n, progress=False)
    monkeypatch.setattr(parallel, "_postfix", shown)
    assert ray.is_initialized()                   # not started by the sweep: left running
    time.sleep(0.5)                               # the cancelled workers are gone
    second = snapshot()
    assert {k: second[k] for k in first} == first
    pending = parallel.pending_units("sensitivity", s, out)
    assert pending, "the sweep was not stopped before its end"
    info = parallel.run_on_ray("sensitivity", s, out, population=n, progress=False)
    assert info["units"] == len(pending)                          # only what was pending
    third = snapshot()
    assert {k: third[k] for k in second} == second                # nothing rewritten
    assert parallel.run_in_workers("sensitivity", s, out, workers=2, population=n,
                                   progress=False)["units"] == 0
    _assert_same(_files(out), _files(tmp_path / "whole"))


@needs_ray
def test_failed_tasks_are_named_at_the_end(ray_instance, tmp_path):
    (ray_instance / "raise-once").touch()
    s = ex.settings("sensitivity", "tiny")
    with pytest.raises(RuntimeError, match=r"units failed in the workers:\n  sens_\S+, .*"
                                           r"RuntimeError: a failure planted by the tests"):
        parallel.run_on_ray("sensitivity", s, tmp_path, population=N, progress=False)
    (ray_instance / "raised").unlink()
    assert len(parallel.pending_units("sensitivity", s, tmp_path)) == N   # one group left


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)                    # import ray fails
    with pytest.raises(ImportError, match=r"pip install marthe-hypergrad\[ray\]"):
        parallel.import_ray()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(SystemExit) as e:
        ex.main(["sensitivity", "--scale", "tiny", "--out", str(tmp_path), "--executor", "ray"])
    assert e.value.code == 2
    assert "pip install marthe-hypergrad[ray]" in capsys.readouterr().err


def test_the_local_executor_never_imports_ray():
    code = ("import sys, hypergrad.experiments, hypergrad.experiments.cli, "
            "hypergrad.experiments.parallel; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ray_options_are_checked(capsys, tmp_path):
    for argv, flag in ((["real-world", "--executor", "ray"], "--executor"),
                       (["sensitivity", "--address", "auto"], "--address"),
                       (["sensitivity", "--gpus-per-task", "1.5"], "--gpus-per-task"),
                       (["sensitivity", "--gpus-per-task", "0"], "--gpus-per-task")):
        with pytest.raises(SystemExit) as e:
            ex.main([*argv, "--out", str(tmp_path)])
        assert e.value.code == 2 and flag in capsys.readouterr().err, argv
