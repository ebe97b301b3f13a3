"""Measuring time and peak memory of a computation, the same way on CPU and GPU.

CPU memory is not tracked by PyTorch, so :func:`peak_memory` runs the function in a forked
child process and reports how far its peak resident set size rose above what the child
already held: the child first returns the heap's free memory to the system
(``malloc_trim``), resets the kernel's high-water mark (``/proc/self/clear_refs``) and
reads ``VmHWM − VmRSS`` after the call, so memory freed earlier by the parent neither hides
nor inflates the peak. On CUDA it uses the allocator's peak counter.
Compare measurements as ratios taken in the same run: these machines are noisy.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import resource
import time
from collections.abc import Callable

import torch

__all__ = ["peak_memory", "time_it", "time_interleaved"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


try:  # loaded here, in the parent: dlopen in a forked child of a threaded process can hang
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:
    _LIBC = None


def _child(conn, fn, args):
    # One intra-op thread: OpenMP's thread pool does not survive fork() (a parallel region
    # in the child can hang once the parent has used the pool). Memory, not time, is measured.
    torch.set_num_threads(1)
    try:
        try:
            if _LIBC is not None:
                _LIBC.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                      # reset the peak RSS (VmHWM), Linux >= 4.0
            before = _status_kib("VmRSS")
            fn(*args)
            peak = _status_kib("VmHWM")
        except OSError:                           # no /proc: the high-water mark of rusage
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            fn(*args)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send(("ok", (peak - before) / 1024.0))   # KiB -> MiB
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


def time_interleaved(fns: dict[str, Callable], repeat: int = 5, warmup: int = 1,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Best-of-``repeat`` times (seconds) of several functions, run in interleaved rounds.

    Round ``r`` runs every function once, so a burst of load from elsewhere hits all of them
    alike: ratios between the results are far steadier than separate :func:`time_it` calls.
    """
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
