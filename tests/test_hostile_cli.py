"""Hostile command lines for ``python -m hypergrad.experiments`` (issue 12).

A bad argument is an argparse usage error: exit status 2 and a message naming the argument,
never a traceback and never a silent exit 0 that runs nothing. These tests fail before any
experiment runs, so they need no data.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypergrad import data
from hypergrad import experiments as ex


def _usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        ex.main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "usage:" in err and "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["mnist-schedules", "--seeds", "-1"], ["--seeds", "positive integer", "-1"]),
        (["mnist-schedules", "--seeds", "0"], ["--seeds", "0"]),
        (["sensitivity", "--seeds", "two"], ["--seeds", "'two'"]),
        (["real-world", "--seeds", "1.5"], ["--seeds", "'1.5'"]),
        (["mnist-schedules", "--lrs-opt-seeds", "0"], ["--lrs-opt-seeds", "0"]),
        (["mnist-schedules", "--lrs-opt-seeds", "-3"], ["--lrs-opt-seeds", "-3"]),
        (["mnist-schedules", "--lrs-opt-iterations", "0"], ["--lrs-opt-iterations", "0"]),
        (["mnist-schedules", "--lrs-opt-iterations", "-10"], ["--lrs-opt-iterations", "-10"]),
        (["sensitivity", "--lrs-opt-seeds", "2"], ["--lrs-opt-seeds", "mnist-schedules only"]),
        (["real-world", "--lrs-opt-iterations", "2"], ["--lrs-opt-iterations", "only"]),
        (["mnist-schedules", "--tasks", "mnist-mlp-adam"], ["--tasks", "real-world only"]),
        (["real-world", "--tasks", "mnist-mlp"], ["--tasks", "'mnist-mlp'", "mnist-mlp-adam"]),
        (["real-world", "--tasks", ""], ["--tasks", "unknown task ''"]),
        (["real-world", "--tasks", ","], ["--tasks", "unknown"]),
        (["real-world", "--scale", "paper", "--tasks", "mnist-mlp-adam"], ["--tasks", "paper"]),
        (["mnist-schedules", "--device", "gpu0"], ["--device", "'gpu0'", "not a device"]),
        (["mnist-schedules", "--device", "cuda:x"], ["--device", "'cuda:x'"]),
        (["mnist-schedules", "--device", "meta"], ["--device", "meta"]),
        (["mnist-schedules", "--device", ""], ["--device"]),
        (["mnist-schedules", "--scale", "huge"], ["--scale", "'huge'"]),
        (["mnist-experiment"], ["experiment", "'mnist-experiment'"]),
        (["sensitivity", "--set", "T"], ["--set", "KEY=JSON", "'T'"]),
        (["sensitivity", "--set", "=5"], ["--set", "''"]),
        (["sensitivity", "--set", "nope=5"], ["--set", "unknown setting 'nope'", "betas"]),
        (["sensitivity", "--set", "T.x=5"], ["--set", "'T.x'", "number"]),
        (["sensitivity", "--set", "betas.9=0.1"], ["--set", "'betas.9'", "0..4"]),
        (["sensitivity", "--set", "betas.x=0.1"], ["--set", "'betas.x'"]),
        (["sensitivity", "--set", "betas..0=1"], ["--set", "'betas..0'"]),
        (["mnist-schedules", "--set", "online.nope=1"], ["--set", "'online.nope'", "online has"]),
        (["sensitivity", "--set", "T=abc"], ["--set", 'T="abc"', "number", "string"]),
        (["sensitivity", "--set", "T=-5"], ["--set", "T=-5", "positive integer"]),
        (["sensitivity", "--set", "T=0"], ["--set", "T=0", "positive"]),
        (["sensitivity", "--set", "T=2.5"], ["--set", "T=2.5", "integer"]),
        (["sensitivity", "--set", "T=true"], ["--set", "T=true", "number"]),
        (["sensitivity", "--set", "T=null"], ["--set", "T=null", "number"]),
        (["sensitivity", "--set", "kappa=NaN"], ["--set", "finite"]),
        (["sensitivity", "--set", "kappa=Infinity"], ["--set", "finite"]),
        (["sensitivity", "--set", "kappa=-1e-4"], ["--set", "kappa=-0.0001", ">= 0"]),
        (["sensitivity", "--set", "max_loss_ratio=-10"], ["--set", "max_loss_ratio", ">= 0"]),
        (["sensitivity", "--set", "betas=[]"], ["--set", "betas=[]", "empty"]),
        (["sensitivity", "--set", "betas=0.1"], ["--set", "betas=0.1", "list"]),
        (["sensitivity", "--set", "betas=[0.1,"], ["--set", "list", "not valid JSON"]),
        (["sensitivity", "--set", 'betas=["a"]'], ["--set", "betas.0", "number"]),
        (["sensitivity", "--set", "betas=[-0.1]"], ["--set", "betas.0", ">= 0"]),
        (["sensitivity", "--set", "seeds=[-1]"], ["--set", "seeds.0", ">= 0"]),
        (["sensitivity", "--set", "sizes=[784,0,10]"], ["--set", "sizes.1", "positive"]),
        (["sensitivity", "--set", 'mus=[{"a":1}]'], ["--set", "mus.0"]),
        (["mnist-schedules", "--set", 'online={"seeds":[0]}'], ["--set", "exactly the keys"]),
        (["mnist-schedules", "--set", "online=3"], ["--set", "object"]),
        (["mnist-schedules", "--set", "quality.beta=[1]"], ["--set", "quality.beta"]),
        (["real-world", "--set", "tasks.5.lr=0.1"], ["--set", "'tasks.5.lr'", "list of 2"]),
        (["real-world", "--set", "tasks.0.optimizer=[1]"], ["--set", "tasks.0.optimizer"]),
        (["real-world", "--set", "tasks=[]"], ["--set", "empty"]),
        (["sensitivity", "--set", "experiment=real-world"], ["--set", "experiment"]),
        (["sensitivity", "--set", "scale=paper"], ["--set", "scale", "command line"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0][0] != "-" else None,
)
def test_bad_command_lines_are_usage_errors(capsys, argv, words):
    last = _usage_error(capsys, *argv, "--print-settings")
    for w in words:
        assert w in last, (w, last)


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        # the overrides the book, the README and the tests use keep working
        (["sensitivity", "--set", "T=7", "--set", "betas=[0.1]", "--seeds", "2"],
         lambda s: s["T"] == 7 and s["betas"] == [0.1] and s["seeds"] == [0, 1]),
        (["mnist-schedules", "--scale", "tiny", "--set", "T=5", "--set", "quality.replay_mus=[0.0]"],
         lambda s: s["quality"]["replay_mus"] == [0.0]),
        (["real-world", "--scale", "paper", "--set", "tasks.0.epochs=100"],
         lambda s: s["tasks"][0]["epochs"] == 100),
        (["real-world", "--scale", "paper", "--tasks", "cifar10-vgg11bn-sgdm", "--seeds", "5"],
         lambda s: [t["name"] for t in s["tasks"]] == ["cifar10-vgg11bn-sgdm"]
         and s["seeds"] == list(range(5))),
        (["real-world", "--tasks", " mnist-mlp-adam,mnist-mlp-adam"],
         lambda s: [t["name"] for t in s["tasks"]] == ["mnist-mlp-adam"]),
        # null where the default is a float (no cap), a number where it is a string ("best")
        (["mnist-schedules", "--set", "lrs_opt.max_lr=null", "--set", "quality.beta=0.001"],
         lambda s: s["lrs_opt"]["max_lr"] is None and s["quality"]["beta"] == 0.001),
        (["mnist-schedules", "--set", "quality.beta=best", "--set", "online.fixed_mus=[0.5,1]"],
         lambda s: s["quality"]["beta"] == "best" and s["online"]["fixed_mus"] == [0.5, 1]),
        (["sensitivity", "--set", 'mus=["auto",0.5]', "--set", "lr0=0.01"],
         lambda s: s["mus"] == ["auto", 0.5] and s["lr0"] == 0.01),
        (["real-world", "--set", "tasks.0.momentum=0", "--set", 'tasks.0.model_kw={"width":4}'],
         lambda s: s["tasks"][0]["momentum"] == 0 and s["tasks"][0]["model_kw"] == {"width": 4}),
        (["mnist-schedules", "--lrs-opt-seeds", "3", "--lrs-opt-iterations", "7"],
         lambda s: s["lrs_opt"]["seeds"] == [0, 1, 2] and s["lrs_opt"]["iterations"] == 7),
    ],
)
def test_good_command_lines_still_work(capsys, argv, check):
    assert ex.main([*argv, "--print-settings"]) == 0
    assert check(json.loads(capsys.readouterr().out))


@pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is available here")
def test_unavailable_cuda_is_a_usage_error(capsys, tmp_path):
    last = _usage_error(capsys, "sensitivity", "--device", "cuda", "--out", str(tmp_path))
    assert "--device='cuda' is not available" in last
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing was written


def test_unwritable_out_is_a_usage_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    last = _usage_error(capsys, "sensitivity", "--scale", "tiny", "--out", str(blocker))
    assert "--out" in last and str(blocker) in last


def test_missing_data_is_one_line_not_a_traceback(capsys, tmp_path, monkeypatch):
    """The data cannot be found or downloaded: exit status 1 and the loader's message."""
    monkeypatch.setenv("HYPERGRAD_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(data, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))  # refused, at once
    code = ex.main(["sensitivity", "--scale", "tiny", "--out", str(tmp_path / "out"),
                    "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "error: could not download t10k-images-idx3-ubyte.gz" in err and "127.0.0.1:9" in err


def test_seeds_minus_one_in_a_real_process(tmp_path):
    """End to end, as the issue reported it: ``--seeds -1`` used to exit 0 having run nothing."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-m", "hypergrad.experiments", "sensitivity", "--seeds", "-1",
         "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "argument --seeds: must be a positive integer, got -1" in out.stderr
    assert list(tmp_path.iterdir()) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)


@given(t=JSON, betas=JSON)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_set_accepts_only_what_fits_property(capsys, t, betas):
    """Any JSON value for ``T`` (an integer >= 1) and ``betas`` (a list of numbers >= 0): the
    command line either prints settings where they fit, or is a usage error — never a traceback
    and never a setting of the wrong kind."""
    argv = ["sensitivity", "--set", f"T={json.dumps(t)}", "--set", f"betas={json.dumps(betas)}",
            "--print-settings"]
    try:
        code = ex.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    t_ok = isinstance(t, int) and not isinstance(t, bool) and t >= 1
    b_ok = isinstance(betas, list) and betas and all(
        isinstance(b, int | float) and not isinstance(b, bool) and b >= 0 and math.isfinite(b)
        for b in betas)
    if t_ok and b_ok:
        assert code == 0 and json.loads(out)["T"] == t and json.loads(out)["betas"] == betas
    else:
        assert code == 2 and "argument --set" in err


def test_set_refuses_null_inside_a_list_of_numbers(capsys):
    """Found by the property above: ``null`` stands only where "none" has a meaning."""
    with pytest.raises(SystemExit) as e:
        ex.main(["sensitivity", "--set", "betas=[null]", "--print-settings"])
    assert e.value.code == 2 and "betas.0=null" in capsys.readouterr().err
    assert ex.main(["mnist-schedules", "--set", "lrs_opt.max_lr=null", "--print-settings"]) == 0
