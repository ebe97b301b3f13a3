"""The Part II experiment runners (hypergrad.experiments) at a tiny scale, and their CLI.

MNIST tests need the MNIST test-set files in ``$HYPERGRAD_DATA/mnist`` (skipped otherwise);
the CIFAR test writes a fake CIFAR-10/100 of a few hundred random images.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hypergrad as hg
from hypergrad import experiments as ex
from hypergrad.schedules import FIXED_SCHEDULES, fixed_schedule
from tests.helpers import HAS_MNIST, needs_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- settings
def test_paper_settings_follow_the_paper():
    s = ex.settings("mnist-schedules", "paper")
    assert (s["n_train"], s["n_val"], s["batch_size"], s["T"]) == (7000, 700, 100, 500)
    assert s["sizes"] == [784, 500, 500, 500, 10]
    assert len(s["online"]["seeds"]) == 20 and len(s["lrs_opt"]["seeds"]) == 4
    # LRS-OPT: the book's choice is projected Adam (150 iterations); the paper's PGD setting
    # is one --set away and gives the paper's unit
    assert (s["lrs_opt"]["optimizer"], s["lrs_opt"]["iterations"]) == ("adam", 150)
    s["lrs_opt"].update(optimizer="pgd", step_size=0.2, iterations=5000)
    unit = ex.lrs_opt_settings(s, 0)
    assert "optimizer" not in unit and (unit["iterations"], unit["step_size"]) == (5000, 0.2)
    rw = ex.settings("real-world", "paper")
    (c10, c100) = rw["tasks"]
    assert (c10["dataset"], c10["model"], c10["optimizer"], c10["momentum"], c10["lr"]) == (
        "cifar10", "vgg11_bn", "sgd", 0.9, 0.1)
    assert (c100["dataset"], c100["model"], c100["optimizer"], c100["lr"]) == (
        "cifar100", "resnet18", "adam", 3e-4)
    for t in rw["tasks"]:
        assert (t["batch_size"], t["epochs"], t["weight_decay"]) == (128, 200, 5e-4)
        assert t["methods"]["exponential"]["gamma"] == 0.99
        assert t["methods"]["staircase"] == {"every": 60, "factor": 0.1}
        assert t["methods"]["sgdr"] == {"T_0": 10, "T_mult": 2}
    with pytest.raises(ValueError, match="scale"):
        ex.settings("sensitivity", "huge")
    with pytest.raises(ValueError, match="experiment"):
        ex.settings("nope", "quick")


def test_settings_are_fresh_copies():
    a = ex.settings("mnist-schedules", "quick")
    a["online"]["betas"].append(1.0)
    assert 1.0 not in ex.settings("mnist-schedules", "quick")["online"]["betas"]


# ----------------------------------------------------------------------------- helpers
def test_hypergradient_agreement():
    g = [0.0, 1.0, -2.0, 3.0, -4.0, 5.0]
    same = ex.hypergradient_agreement([0.0] + [2 * x for x in g[1:]], g)
    assert same["cosine"] == pytest.approx(1.0) and same["sign"] == 1.0 and same["steps"] == 5
    opposite = ex.hypergradient_agreement([-x for x in g], g)
    assert opposite["cosine"] == pytest.approx(-1.0) and opposite["sign"] == 0.0
    half = ex.hypergradient_agreement([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], g)
    assert half["sign"] == pytest.approx(3 / 5)
    assert ex.hypergradient_agreement([0.0, 0.0], [1.0, 1.0])["sign"] is None


def test_unit_store_in_memory_and_on_disk(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": float("nan"), "y": (1, 2), "z": torch.tensor([1.5])}

    mem = ex.UnitStore(None)
    assert mem.get("u", {"a": 1}, compute) == {"x": None, "y": [1, 2], "z": [1.5]}
    mem.get("u", {"a": 1}, compute)
    assert len(calls) == 1 and mem.computed == 1        # reused within the session
    disk = ex.UnitStore(tmp_path)
    disk.get("u", {"a": (1, 2)}, compute)
    again = ex.UnitStore(tmp_path)
    again.get("u", {"a": [1, 2]}, compute)               # tuples are stored as lists
    assert len(calls) == 2 and again.loaded == 1 and again.computed == 0
    other = ex.UnitStore(tmp_path)
    other.get("u", {"a": 3}, compute)                    # other settings: recomputed
    assert len(calls) == 3 and len(list((tmp_path / "units").glob("u.json*.stale"))) == 1
    stored = ex.read_unit_file(ex.unit_file(tmp_path, "u"))
    assert stored["settings"] == {"a": 3} and "wall_time_s" in stored["meta"]


# ----------------------------------------------------------------------------- Section 5
@pytest.fixture(scope="module")
def mnist_tiny():
    if not HAS_MNIST:
        pytest.skip("MNIST files not found in $HYPERGRAD_DATA")
    torch.set_num_threads(1)
    return ex.run("mnist-schedules", scale="tiny", progress=False)


@needs_mnist
def test_mnist_schedules_tiny(mnist_tiny):
    r = mnist_tiny
    s = r["settings"]
    T = s["T"]
    json.dumps(r, allow_nan=False)                      # plain, standard JSON
    assert set(r["online"]) == {"hd", "rtho", "marthe-mu0.9", "marthe-auto-mu", "marthe"}
    for method, by_beta in r["online"].items():
        for runs in by_beta.values():
            for run in runs.values():
                assert run["diverged"] or len(run["lr"]) == T
                assert all(lr >= 0 for lr in run["lr"])
                # the unit files keep μ_t only where it moves (adaptive μ), in float32
                if method in ("marthe-auto-mu", "marthe") and not run["diverged"]:
                    assert len(run["mu"]) == T and all(0 <= m <= 1 for m in run["mu"])
                    assert run["mu"][0] == 0.0        # μ_0 = 0 (Algorithm 1)
                else:
                    assert "mu" not in run and "loss" not in run
    # the κ selection records how many runs it made; κ = κ_start / 10^(tries - 1)
    for runs in r["online"]["marthe"].values():
        for run in runs.values():
            assert run["kappa_tries"] >= 1
            if run["kappa"] is not None:
                assert run["kappa"] == pytest.approx(
                    s["online"]["kappa_start"] / 10 ** (run["kappa_tries"] - 1))
    lo = r["lrs_opt"]["0"]
    assert lo["iterations"] == s["lrs_opt"]["iterations"] == len(lo["history"])
    assert len(lo["lrs"]) == T and 0 <= lo["val_acc"] <= 1
    q = r["quality"]["0"]
    assert len(q["replay"]["exact"]) == T
    assert set(q["replay"]["estimates"]) == {"0", "auto"}
    for est in q["replay"]["estimates"].values():
        # a float64 cosine may round to 1 + 2e-16: compare with a float64-sized margin
        assert len(est["estimate"]) == T and abs(est["cosine"]) <= 1 + 1e-12
    summary = ex.summarize_online(r)
    assert set(summary["methods"]) == set(r["online"])
    assert summary["threshold"] == s["accuracy_threshold"]
    low = ex.summarize_online(r, threshold=0.0)["methods"]["hd"]
    assert low["kept"][0] == sum(not x["diverged"] for x in r["online"]["hd"]["0.001"].values())


def test_the_best_beta_counts_diverged_runs_as_zero():
    """A β at which most runs diverge is not a method's best on the strength of the few that
    trained: the figure's mean (kept runs) prefers β = 0.1, the expected accuracy β = 0.01."""
    def run(acc):
        return {"diverged": acc is None, "val_acc": acc}

    result = {"settings": {"accuracy_threshold": 0.5}, "online": {"m": {
        "0.1": {"0": run(0.97), "1": run(None), "2": run(None)},        # kept mean 0.97
        "0.01": {"0": run(0.93), "1": run(0.92), "2": run(0.91)},      # kept mean 0.92
        "0.001": {"0": run(0.2), "1": run(0.3), "2": run(0.1)},        # all below 0.5
    }}}
    rows = ex.summarize_online(result)["methods"]["m"]
    assert rows["mean"][:2] == [pytest.approx(0.97), pytest.approx(0.92)]
    assert rows["mean"][2] is None and rows["kept"] == [1, 3, 0]
    assert rows["expected"] == [pytest.approx(0.97 / 3), pytest.approx(0.92),
                                pytest.approx(0.2)]
    assert ex.summarize_online(result)["best"] == {"m": 0.01}
    # with every run below the threshold there is no best β
    assert ex.summarize_online(result, threshold=0.99)["best"] == {"m": None}


@needs_mnist
def test_quality_exact_is_the_hypergradient_of_the_recorded_schedule(mnist_tiny):
    """``exact`` is ∂f_T/∂η_t of the schedule the run produced, on the seed's own batches."""
    r = mnist_tiny
    task = ex.MnistTask(r["settings"], "cpu")
    own = r["quality"]["0"]["own"]["marthe-auto-mu"]
    _, g = hg.hypergradient(task.dyn, task.init_params(0), torch.tensor(own["lr"]),
                            task.batches(0), task.objective)
    np.testing.assert_allclose(own["exact"], g.tolist(), rtol=1e-4, atol=1e-7)
    run = r["online"]["marthe-auto-mu"][f"{r['quality_betas']['marthe-auto-mu']:g}"]["0"]
    assert own["estimate"] == run["hypergradient"]      # Δ_t of that same run


@needs_mnist
def test_a_quality_beta_off_the_grid_gets_its_own_online_units(tmp_path, one_thread):
    """``quality.beta`` set to a value not in ``online.betas``: the quality seed's own runs
    are computed at that β, stored under their own unit names, and are the runs whose Δ_t
    the quality unit compares."""
    s = ex.settings("mnist-schedules", "tiny")
    s["lrs_opt"]["iterations"] = 1
    s["quality"].update(beta=3e-3, replay_mus=[0.0])
    r = ex.run_mnist_schedules(s, out_dir=tmp_path, progress=False)
    assert set(r["quality_betas"].values()) == {3e-3} and 3e-3 not in s["online"]["betas"]
    for method in r["online"]:
        unit = ex.mnist_schedules.online_unit(r["settings"], method, 3e-3, 0)
        assert ex.unit_file(tmp_path, unit.name) is not None
        own = r["quality"]["0"]["own"][method]
        if not own["diverged"]:
            stored = ex.read_unit_file(ex.unit_file(tmp_path, unit.name))
            assert own["estimate"] == stored["result"]["hypergradient"]
            assert stored["settings"] == unit.settings and unit.settings["beta"] == 3e-3


@needs_mnist
def test_lrs_opt_divergence_stops_the_unit_and_keeps_the_last_good_schedule(tmp_path):
    s = ex.settings("mnist-schedules", "tiny")
    s["lrs_opt"].update(step_size=1e6, max_lr=None, iterations=3)
    task = ex.MnistTask(s, "cpu")
    r = ex._lrs_opt_unit(task, s, 0, ex.UnitStore(tmp_path), False)
    assert r["diverged"] and "diverged at step" in r["diverged"]
    assert r["iterations"] == len(r["history"]) == 1          # the second iteration failed
    # the schedule evaluated last: the start, in the weights' dtype (float32)
    assert torch.equal(torch.tensor(r["lrs"], dtype=torch.float32),
                       torch.full((s["T"],), s["fixed_lr"], dtype=torch.float32))
    assert r["val_acc"] is not None
    stored = ex.read_unit_file(ex.unit_file(tmp_path, "lrs_opt_seed0"))
    assert stored["result"]["diverged"] == r["diverged"]


def _cli(*args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-m", "hypergrad.experiments", *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@needs_mnist
def test_cli_writes_results_and_resumes(tmp_path):
    args = ("mnist-schedules", "--scale", "tiny", "--out", str(tmp_path), "--no-progress",
            "--set", "T=5", "--set", "quality.replay_mus=[0.0]")
    _cli(*args)
    folder = tmp_path / "mnist-schedules" / "tiny"
    res = json.loads((folder / "results.json").read_text())
    assert res["settings"]["T"] == 5
    assert res["units"]["computed"] > 0
    for key in ("commit", "torch", "wall_time_s", "device"):
        assert key in res["meta"]
    units = list(ex.unit_files(folder).values())
    assert set(ex.unit_files(folder)) >= {"fixed_seed0", "lrs_opt_seed0", "quality_seed0",
                                          "online_hd_beta0.001_seed0"}
    stamps = {u.name: u.stat().st_mtime_ns for u in units}

    _cli(*args)                                        # again: nothing is recomputed
    res2 = json.loads((folder / "results.json").read_text())
    assert res2["units"]["computed"] == 0 and res2["units"]["loaded"] == len(units)
    assert {u.name: u.stat().st_mtime_ns for u in units} == stamps
    assert res2["online"] == res["online"] and res2["lrs_opt"] == res["lrs_opt"]

    # more seeds: only the new seed's units are computed
    _cli(*args, "--seeds", "2")
    res3 = json.loads((folder / "results.json").read_text())
    assert set(res3["online"]["hd"]["0.001"]) == {"0", "1"}
    assert res3["units"]["computed"] == 1 + len(res3["online"])    # fixed + one per method
    assert {u.name: u.stat().st_mtime_ns for u in units} == stamps


@needs_mnist
def test_cli_print_settings_and_overrides(tmp_path):
    out = _cli("sensitivity", "--scale", "paper", "--print-settings", "--set", "T=7",
               "--set", "betas=[0.1]", "--seeds", "2")
    s = json.loads(out.stdout)
    assert s["T"] == 7 and s["betas"] == [0.1] and s["seeds"] == [0, 1]


@needs_mnist
def test_sensitivity_tiny_resumes(tmp_path):
    s = ex.settings("sensitivity", "tiny")
    r = ex.run("sensitivity", s, out_dir=tmp_path, progress=False)
    assert set(r["panels"]) == {"fixed", "adaptive-beta"}
    for p in r["panels"].values():
        assert len(p["val_error"]) == len(s["mus"]) and len(p["val_error"][0]) == len(s["betas"])
        for row, drow in zip(p["val_error"], p["diverged"], strict=True):
            for v, d in zip(row, drow, strict=True):
                assert (v is None) == (d == len(s["seeds"]))
                assert v is None or 0 <= v <= 1
    n = r["units"]["computed"]
    assert n == 2 * len(s["betas"]) * len(s["mus"]) * len(s["seeds"])
    r2 = ex.run("sensitivity", s, out_dir=tmp_path, progress=False)
    assert r2["units"] == {"computed": 0, "loaded": n}
    assert r2["panels"] == r["panels"]
    assert ex.load_results("sensitivity", "tiny", tmp_path.parent) is None
    root = tmp_path / "res"
    ex.run("sensitivity", s, out_dir=ex.result_dir(root, "sensitivity", "tiny"), progress=False)
    found = ex.load_or_run("sensitivity", "tiny", root=root, prefer=())
    assert found["panels"] == r["panels"] and found["meta"]["loaded_from"].endswith("tiny")


# ----------------------------------------------------------------------------- Section 6
@needs_mnist
def test_real_world_tiny_mnist():
    s = ex.settings("real-world", "tiny")
    r = ex.run("real-world", s, progress=False)
    json.dumps(r, allow_nan=False)
    for task in s["tasks"]:
        runs = r["tasks"][task["name"]]
        assert set(runs) == {"exponential", "staircase", "sgdr", "hd", "rtho", "marthe"}
        for method, by_seed in runs.items():
            run = by_seed["0"]
            if run["diverged"]:
                continue
            spe = run["steps_per_epoch"]
            every = max(1, spe // task["evals_per_epoch"])
            assert run["epoch"][0] == 0 and run["epoch"][-1] == task["epochs"]
            assert len(run["epoch"]) == 1 + task["epochs"] * (spe // every)
            assert run["lr_stride"] == 1 and len(run["lr"]) == spe * task["epochs"]
            if method in FIXED_SCHEDULES:
                total = len(run["lr"])
                want = fixed_schedule(method, task["methods"][method], task["lr"], total,
                                         task["schedule_epochs"])
                np.testing.assert_allclose(run["lr"], want.tolist())
        assert runs["marthe"]["0"]["kappa"] is not None
    summary = ex.summarize_real_world(r)
    assert set(summary) == {t["name"] for t in s["tasks"]}


@needs_mnist
def test_training_run_resumes_from_its_checkpoint(tmp_path):
    """An interrupted run continues from its last epoch and ends as an uninterrupted one."""
    task = ex.settings("real-world", "tiny")["tasks"][0]
    data = ex._rw_data(task, "cpu")
    spec = task["methods"]["rtho"]
    ckpt = tmp_path / "run.ckpt.pt"
    t1 = {**task, "epochs": 1}
    ex._train_unit(t1, "rtho", spec, 0, data, "cpu", ckpt)          # "interrupted" after 1
    assert ckpt.exists()
    t3 = {**task, "epochs": 3}
    resumed = ex._train_unit(t3, "rtho", spec, 0, data, "cpu", ckpt)
    fresh = ex._train_unit(t3, "rtho", spec, 0, data, "cpu", None)
    assert resumed["epoch"] == fresh["epoch"] and resumed["epoch"][-1] == 3
    np.testing.assert_allclose(resumed["val_loss"], fresh["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["lr"], fresh["lr"], rtol=1e-5)


def _fake_cifar(root: Path, n_train: int = 60, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)

    def dump(path, n, key, classes):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         key: rng.integers(0, classes, n).tolist()}, f)

    for i in range(1, 6):
        dump(root / "cifar-10-batches-py" / f"data_batch_{i}", n_train // 5, b"labels", 10)
    dump(root / "cifar-10-batches-py" / "test_batch", n_test, b"labels", 10)
    dump(root / "cifar-100-python" / "train", n_train, b"fine_labels", 100)
    dump(root / "cifar-100-python" / "test", n_test, b"fine_labels", 100)


def test_real_world_paper_code_path_on_fake_cifar(tmp_path, monkeypatch):
    """The paper-scale tasks (VGG-11-BN/CIFAR-10 with SGD-momentum, ResNet-18/CIFAR-100 with
    Adam, augmentation, checkpoints, the CLI) end to end on a few fake images."""
    _fake_cifar(tmp_path / "data")
    monkeypatch.setenv("HYPERGRAD_DATA", str(tmp_path / "data"))
    s = ex.settings("real-world", "paper")
    s["seeds"] = [0]
    for task in s["tasks"]:
        task.update(n_val=12, batch_size=16, val_batch_size=12, epochs=1, probe_steps=1,
                    model_kw={"width": 4})
    s["tasks"][1]["methods"] = {k: s["tasks"][1]["methods"][k] for k in ("staircase", "marthe")}
    out = tmp_path / "out"
    r = ex.run("real-world", s, out_dir=out, progress=False)
    c10, c100 = (r["tasks"][t["name"]] for t in s["tasks"])
    assert set(c10) == {"exponential", "staircase", "sgdr", "hd", "rtho", "marthe"}
    for runs in (c10, c100):
        for run in runs.values():
            run = run["0"]
            assert run["steps_per_epoch"] == (60 - 12) // 16
            assert run["diverged"] or (run["epoch"] == [0, 1] and 0 <= run["test_acc"][-1] <= 1)
    assert not list((out / "units").glob("*.ckpt.pt"))     # finished runs leave no checkpoint
    n = r["units"]["computed"]
    r2 = ex.run("real-world", s, out_dir=out, progress=False)
    assert r2["units"] == {"computed": 0, "loaded": n}
