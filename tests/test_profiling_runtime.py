"""Memory/time measurement helpers and the chapters' setup."""

import os

import pytest
import torch

from hypergrad import viz
from hypergrad.profiling import peak_memory, time_interleaved, time_it


def _allocate(n):
    return torch.ones(n, dtype=torch.float64).sum()


def test_peak_memory_sees_an_allocation_after_the_parent_used_threads():
    big = torch.ones(20_000_000)            # the parent uses (and frees) memory and its threads
    big.add_(1.0)
    del big
    mib = peak_memory(_allocate, 10_000_000)  # 76.3 MiB
    small = peak_memory(_allocate, 1000)
    assert 70 < mib < 120 and small < 30


def test_peak_memory_reports_failures():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        peak_memory(lambda: 1 / 0)


def test_timers_return_positive_times():
    assert time_it(lambda: sum(range(1000)), repeat=2) > 0
    t = time_interleaved({"a": lambda: sum(range(10)), "b": lambda: sum(range(100000))}, repeat=3)
    assert set(t) == {"a", "b"} and 0 < t["a"] < t["b"]


def test_chapter_setup(monkeypatch, capsys):
    monkeypatch.delenv("HYPERGRAD_SCALE", raising=False)
    monkeypatch.delenv("HYPERGRAD_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        s = viz.chapter_setup(seed=3, device="cpu")
        assert s.scale == "quick" and not s.paper and s.seed == 3 and s.device.type == "cpu"
        assert torch.get_num_threads() == 1
        assert "· cpu ·" in capsys.readouterr().out
        a = torch.rand(3)
        viz.chapter_setup(seed=3, device="cpu", verbose=False)
        assert torch.equal(a, torch.rand(3))      # seeded
        monkeypatch.setenv("HYPERGRAD_SCALE", "paper")
        assert viz.chapter_setup(device="cpu", verbose=False).paper
        with pytest.raises(ValueError, match="scale"):
            viz.chapter_setup(scale="huge")
    finally:
        torch.set_num_threads(before)
    assert os.environ.get("HYPERGRAD_SCALE") == "paper"
