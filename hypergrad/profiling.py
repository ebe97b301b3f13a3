"""Measuring time and peak memory of a computation, the same way on CPU and GPU.

CPU memory is not tracked by PyTorch, so :func:`peak_memory` runs the function in a forked
child process and reports how far its peak resident set size rose above what the child
already held (``ru_maxrss`` before and after). On CUDA it uses the allocator's peak counter.
Compare measurements as ratios taken in the same run: these machines are noisy.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable

import torch

__all__ = ["peak_memory", "time_it"]


def _child(conn, fn, args):
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn(*args)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send(("ok", (after - before) / 1024.0))   # ru_maxrss is in KiB on Linux
    except BaseException as e:  # report any failure to the parent
        conn.send(("error", repr(e)))
    finally:
        conn.close()


def peak_memory(fn: Callable, *args, device: torch.device | str = "cpu") -> float:
    """Peak memory (MiB) that ``fn(*args)`` adds on top of what is already allocated.

    CPU: in a forked child, the rise of the peak resident set size (Linux). CUDA: the rise of
    ``torch.cuda.max_memory_allocated`` in this process.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(*args)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    status, value = parent.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"peak_memory: the measured function failed: {value}")
    return value


def time_it(fn: Callable, *args, repeat: int = 3, warmup: int = 1,
            device: torch.device | str = "cpu") -> float:
    """The best of ``repeat`` wall-clock times (seconds) of ``fn(*args)`` after ``warmup`` runs."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn(*args)
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn(*args)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best
