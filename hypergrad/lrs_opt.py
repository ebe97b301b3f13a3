r"""LRS-OPT: Problem (1) solved by projected gradient descent on the whole schedule.

LRS-OPT treats the schedule ``η ∈ R^T_{≥0}`` as the hyperparameter of Problem (1),

.. math::

    \min_{η ≥ 0} f_T(η) = E(θ(w_T(η))),

and runs ``η ← Π(η − γ ∇f_T(η))`` with the exact hypergradient of Eq. 4 (reverse mode), where
``Π`` projects onto ``[0, max_lr]``. Every iteration restarts from the same initial weights
``w_0``; minibatches may be drawn afresh per iteration (Section 5 does, so that the schedule
does not fit one sample path). A run that diverges is returned, not lost: its result says where
(``diverged``) and keeps the last schedule whose ``f_T`` was finite.

The outer optimiser is the paper's projected gradient descent (``optimizer="pgd"``, the
default). Two projected alternatives reach the same ``f_T`` in far fewer iterations (see
``benchmarks/bench_lrs_opt.py``): ``"adam"`` (Adam's step on the schedule, then ``Π``) and
``"nesterov"`` (Nesterov momentum, then ``Π``). Their state is saved with the run, so a resumed
run continues exactly.

:func:`~hypergrad.lrs_opt_population.lrs_opt_population` runs LRS-OPT for ``N`` members at once (several seeds: their own
``w_0``, minibatches and starting schedules), with the ``N`` hypergradients of each iteration
as one batched computation (:func:`~hypergrad.hypergradient.hypergradients`); every member
equals its own :func:`lrs_opt` run.

A reference schedule from noisy hypergradients (fresh minibatches per iteration) wanders around
the optimum; :func:`lrs_opt` can also return the *average* of its projected iterates
(``average_from``: Polyak–Ruppert tail averaging, ``η̄ = mean_{k ≥ k_0} η_{k+1}``) and record,
every ``snapshot_every`` iterations, the current and the averaged schedule. The recorded
schedules are then evaluated on fixed held-out draws of minibatches
(:func:`~hypergrad.lrs_opt_heldout.heldout_objective`,
:func:`~hypergrad.lrs_opt_heldout.trace_heldout`), paired across schedules, which shows
whether ``f_T`` of the last and of the averaged schedule have stopped moving beyond the noise
of the draws.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from hypergrad.dynamics import DivergenceError, Dynamics, Params, State
from hypergrad.hypergradient import check_schedule, hypergradient
from hypergrad.io import atomic_write_json, run_metadata

__all__ = ["LrsOptResult", "lrs_opt", "OPTIMIZERS", "ResumeError", "fingerprint"]

#: the outer optimisers and their options (with defaults)
OPTIMIZERS = {
    "pgd": {},
    "nesterov": {"momentum": 0.9},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


class ResumeError(ValueError):
    """A file given to :func:`lrs_opt` to resume from cannot be resumed (unreadable, not an
    LRS-OPT result, or saved by another run); the message names the file and why."""


@dataclass
class LrsOptResult:
    """The schedule after ``iterations`` steps, and ``f_T`` before each step (``history``).

    ``previous`` is the schedule whose ``f_T`` is ``history[-1]``. A run that diverged has
    ``diverged = {"iteration", "step", "message", "lrs"}`` (the schedule that diverged, at which
    inner step, and why), and ``lrs`` is then the last schedule whose ``f_T`` was finite.
    ``optimizer_state`` is the outer optimiser's state (moments, step count) after the last
    iteration; ``batches_check`` fingerprints the minibatches of one iteration, so that a
    resumed run with ``batches`` given as a function can check that they are the same.

    Iterate averaging (``average_from = k_0``, ``None`` without): ``averaged`` is the mean of
    the projected schedules ``η_{k+1} = Π(η_k − γ d_k)`` of the iterations ``k ≥ k_0`` (the
    schedule after each such step), ``averaged_count`` how many; ``None`` and 0 before the
    first. It is kept as a running mean in float64 (``m ← m + (η − m)/n``), saved exactly, so
    that a resumed run continues it bit for bit. After a divergence the diverged schedule is
    taken out of it again (to rounding), as ``lrs`` falls back to the previous schedule.

    Snapshots (``snapshot_every = k``, ``None`` without): ``snapshots`` lists, after every
    ``k``-th iteration, ``{"iteration": n, "lrs": η_n, "averaged": η̄ or None}`` with the
    learning rates rounded to float32 precision (the fewest digits that read back as the same
    float32, as the experiments' traces), for :func:`~hypergrad.lrs_opt_heldout.trace_heldout`.
    """

    lrs: list[float]
    history: list[float]
    iterations: int
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    previous: list[float] | None = None
    diverged: dict | None = None
    optimizer_state: dict | None = None
    batches_check: dict | None = None
    average_from: int | None = None
    averaged: list[float] | None = None
    averaged_count: int = 0
    snapshot_every: int | None = None
    snapshots: list[dict] | None = None

    def schedule(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.tensor(self.lrs, dtype=dtype)

    def averaged_schedule(self, dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
        """The averaged schedule ``η̄`` as a tensor (``None`` when nothing was averaged)."""
        return None if self.averaged is None else torch.tensor(self.averaged, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LrsOptResult:
        """Read a saved result; a truncated, corrupt or foreign file is a :class:`ResumeError`
        naming the file."""
        try:
            data = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResumeError(f"cannot read the LRS-OPT file {str(path)!r}: it is not valid JSON "
                              f"(truncated or corrupt?): {err}") from err
        return cls._from_dict(data, path)

    @classmethod
    def _from_dict(cls, data, path) -> LrsOptResult:
        def bad(why):
            return ResumeError(f"{str(path)!r} is not an LRS-OPT result file: {why}")

        if not isinstance(data, dict):
            raise bad(f"it holds a {type(data).__name__}, not an object")
        names = {f.name for f in fields(cls)}
        missing = [k for k in ("lrs", "history", "iterations") if k not in data]
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise bad(f"missing {missing}" if missing else f"unknown entries {unknown}")
        num = (int, float)

        def numbers(v):
            return isinstance(v, list) and all(isinstance(x, num) and not isinstance(x, bool)
                                                for x in v)

        it = data["iterations"]
        if not (isinstance(it, int) and not isinstance(it, bool) and it >= 0):
            raise bad(f"iterations={it!r} is not a count")
        if not numbers(data["lrs"]) or not data["lrs"]:
            raise bad("lrs is not a non-empty list of numbers")
        if not numbers(data["history"]) or len(data["history"]) != it:
            raise bad(f"history is not a list of {it} numbers")
        for key in ("settings", "meta"):
            if not isinstance(data.get(key, {}), dict):
                raise bad(f"{key} is not an object")
        T = len(data["lrs"])

        def count(v, least=0):
            return isinstance(v, int) and not isinstance(v, bool) and v >= least

        k0, n_avg, avg = data.get("average_from"), data.get("averaged_count", 0), data.get("averaged")
        if not (k0 is None or count(k0)):
            raise bad(f"average_from={k0!r} is not an iteration index")
        if not count(n_avg) or n_avg > it:
            raise bad(f"averaged_count={n_avg!r} is not a count of at most {it} iterates")
        if (avg is None) != (n_avg == 0) or (avg is not None and (
                not numbers(avg) or len(avg) != T)):
            raise bad(f"averaged is not the mean of {n_avg} schedules of {T} entries")
        every, snaps = data.get("snapshot_every"), data.get("snapshots")
        if not (every is None or count(every, 1)):
            raise bad(f"snapshot_every={every!r} is not an integer >= 1")
        if snaps is not None and not (isinstance(snaps, list) and all(
                isinstance(x, dict) and set(x) == {"iteration", "lrs", "averaged"}
                and count(x["iteration"], 1) and isinstance(x["lrs"], list)
                and len(x["lrs"]) == T and (x["averaged"] is None or (
                    isinstance(x["averaged"], list) and len(x["averaged"]) == T))
                for x in snaps)):
            raise bad("snapshots is not a list of {iteration, lrs, averaged}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, asdict(self))


# ------------------------------------------------------------------ run identity (resume key)
def fingerprint(obj) -> str:
    """A short hash of tensors (dtype, shape and values) and of the containers, numbers and
    strings around them: what identifies initial weights, a schedule or minibatches."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:20]


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        h.update(f"tensor{t.dtype}{tuple(t.shape)};".encode())
        if t.device.type != "meta":
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"dict{len(obj)};".encode())
        for k in sorted(obj, key=str):
            h.update(f"{k!s};".encode())
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:       # an object we cannot read: its type only (a repr may hold an address)
        h.update(f"object:{type(obj).__qualname__};".encode())


_WHAT = {"param_shapes": "another model (other parameter names or shapes)",
         "init_params": "other initial weights w_0",
         "init_lrs": "another initial schedule",
         "batches": "other minibatches",
         "dynamics": "other dynamics",
         "optimizer": "another outer optimiser"}


# ------------------------------------------------------------------ outer optimisers
def _check_optimizer(name: str, options: dict | None) -> dict:
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIMIZERS[name]))
    if unknown:
        known = sorted(OPTIMIZERS[name]) or "none"
        raise ValueError(f"optimizer {name!r} has no option(s) {unknown} (its options: {known})")
    opts = {**OPTIMIZERS[name], **options}
    for k, v in opts.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"optimizer option {k}={v!r} must be a finite number")
        ok = 0 < v if k == "eps" else 0 <= v < 1
        if not ok:
            raise ValueError(f"optimizer option {k}={v!r} must be "
                             + ("> 0" if k == "eps" else "in [0, 1)"))
    return {k: float(v) for k, v in opts.items()}


def _outer_init(name: str, lrs: torch.Tensor) -> dict:
    if name == "pgd":
        return {}
    if name == "nesterov":
        return {"buf": torch.zeros_like(lrs)}
    return {"k": 0, "m": torch.zeros_like(lrs), "v": torch.zeros_like(lrs)}


def _outer_step(name: str, opts: dict, lrs, grad, state: dict, step_size: float,
                max_lr: float | None):
    """One step of the outer optimiser, then the projection ``Π`` onto ``[0, max_lr]``."""
    if name == "pgd":
        direction = grad
    elif name == "nesterov":            # torch.optim.SGD(nesterov=True), dampening 0
        buf = opts["momentum"] * state["buf"] + grad
        state = {"buf": buf}
        direction = grad + opts["momentum"] * buf
    else:                               # Adam (Kingma & Ba), bias-corrected
        b1, b2, k = opts["beta1"], opts["beta2"], state["k"] + 1
        m = b1 * state["m"] + (1 - b1) * grad
        v = b2 * state["v"] + (1 - b2) * grad * grad
        state = {"k": k, "m": m, "v": v}
        direction = (m / (1 - b1 ** k)) / ((v / (1 - b2 ** k)).sqrt() + opts["eps"])
    return (lrs - step_size * direction).clamp(min=0.0, max=max_lr), state


def _state_to_json(state: dict) -> dict:
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _state_from_json(name: str, saved, like: torch.Tensor, path) -> dict:
    fresh = _outer_init(name, like)
    if saved is None and name == "pgd":
        return fresh
    ok = isinstance(saved, dict) and set(saved) == set(fresh)
    if ok:
        try:
            state = {k: torch.tensor(v, dtype=like.dtype, device=like.device)
                     if isinstance(fresh[k], torch.Tensor) else int(v) for k, v in saved.items()}
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(v.shape == like.shape for v in state.values() if isinstance(v, torch.Tensor))
    if not ok:
        raise ResumeError(f"cannot resume {str(path)!r}: its optimizer_state is not the state "
                          f"of the {name!r} optimiser for this schedule")
    return state


# ------------------------------------------------------------------ LRS-OPT
def lrs_opt(dyn: Dynamics, params: Params | State, lrs: torch.Tensor | Sequence[float], batches: Sequence | Callable[[int], Sequence],
            objective: Callable, iterations: int, step_size: float, *,
            max_lr: float | None = None, optimizer: str = "pgd",
            optimizer_options: dict | None = None, checkpoint_every: int | None = None,
            average_from: int | None = None, snapshot_every: int | None = None,
            save_path: str | os.PathLike | None = None, save_every: int = 10,
            progress: bool = True, callback: Callable | None = None,
            settings: dict | None = None) -> LrsOptResult:
    """LRS-OPT: projected gradient descent on the schedule (Section 5), or a faster outer
    optimiser.

    Args:
        dyn, params: the dynamics and the initial weights ``w_0`` (the same every iteration).
        lrs: the initial schedule (1-D, ``T`` entries, ``≥ 0``).
        batches: ``T`` minibatches, or ``iteration -> T minibatches`` for fresh ones per
            iteration.
        objective: ``E(params) -> scalar`` (``E(params, buffers)`` with buffers).
        iterations: hyper-iterations in total (a resumed run counts those already done).
        step_size: ``γ``. With ``optimizer="pgd"``: ``η ← Π(η − γ ∇f_T(η))``; with
            ``"nesterov"``: ``b ← m b + ∇f_T``, ``η ← Π(η − γ (∇f_T + m b))``; with ``"adam"``:
            ``η ← Π(η − γ m̂ / (√v̂ + ε))`` (Adam's moments of ``∇f_T``). ``Π`` clips to
            ``[0, max_lr]`` (no upper bound when ``max_lr`` is ``None``).
        optimizer: ``"pgd"`` (the paper's, default), ``"nesterov"`` or ``"adam"``.
        optimizer_options: ``{"momentum"}`` for Nesterov; ``{"beta1", "beta2", "eps"}`` for
            Adam (defaults in :data:`OPTIMIZERS`).
        checkpoint_every: the reverse mode's segment length (default ``⌈√T⌉``).
        average_from: iterate averaging (Polyak–Ruppert): the result's ``averaged`` is the
            mean of the projected schedules after the iterations ``k ≥ average_from``
            (``iterations // 2``: the last half of the iterates); ``None`` (default): none.
            With ``average_from ≥ iterations`` nothing is averaged (``averaged`` is ``None``).
        snapshot_every: record the schedule and the averaged one after every
            ``snapshot_every``-th iteration in the result's ``snapshots`` (float32 precision),
            to be evaluated on fixed held-out draws with
            :func:`~hypergrad.lrs_opt_heldout.trace_heldout`; ``None``
            (default): no snapshots.
        save_path: JSON file; saved every ``save_every`` iterations (atomically) and at the
            end, with the optimiser's state, the running average and the snapshots. If it
            exists, the run *resumes* from it — only if it is the same run: same ``T``, step
            size, cap, optimiser, dynamics, model (names and shapes), initial weights, initial
            schedule and minibatches; anything else is a :class:`ResumeError` naming the
            difference (so is a truncated or foreign file). ``average_from`` and
            ``snapshot_every`` may differ from the file's only where that loses nothing and
            needs nothing it lacks: a file saved after ``n`` iterations without averaging
            (or one saved before averaging began) resumes with ``average_from ≥ n``; otherwise
            the iterates to average are not in it, a :class:`ResumeError` naming
            ``average_from`` (likewise ``snapshot_every``: the snapshots the new cadence
            needs up to ``n`` must be exactly those saved).
        callback: ``callback(iteration, lrs, value, grad)`` after each iteration.
        settings: extra settings saved with the result; a resumed file must match all of them.

    Returns:
        :class:`LrsOptResult` with the final schedule and ``f_T`` per iteration. When an
        iteration diverges (a non-finite value, :class:`~hypergrad.dynamics.DivergenceError`),
        the run stops and returns (and saves) its result with ``diverged`` set and ``lrs`` the
        last schedule evaluated without diverging; resuming a diverged file returns it as is.
    """
    opts = _check_run(iterations, step_size, max_lr, optimizer, optimizer_options)
    _check_index("average_from", average_from, 0)
    _check_index("snapshot_every", snapshot_every, 1)
    theta0 = params.w["params"] if isinstance(params, State) else params
    if not isinstance(theta0, dict) or not theta0:
        raise ValueError("params must be a non-empty dict of tensors (or a State)")
    like = next(iter(theta0.values()))
    lrs = check_schedule(lrs, like=like).clone()
    settings = _settings(dyn, params, theta0, lrs, batches, step_size, max_lr, optimizer, opts,
                         settings)
    result = LrsOptResult(lrs.tolist(), [], 0, settings, average_from=average_from,
                          snapshot_every=snapshot_every,
                          snapshots=None if snapshot_every is None else [])
    ostate = _outer_init(optimizer, lrs)
    if save_path is not None and Path(save_path).exists():
        result = _resume(save_path, settings, batches)
        lrs = torch.tensor(result.lrs, dtype=lrs.dtype, device=lrs.device)
        if result.diverged is not None:
            return result
        ostate = _state_from_json(optimizer, result.optimizer_state, lrs, save_path)
        _resume_averaging(result, average_from, snapshot_every, save_path)
    # the running mean of the averaged iterates, float64 on the CPU (saved exactly as JSON)
    mean = None if result.averaged is None else torch.tensor(result.averaged, dtype=torch.float64)
    elapsed = result.meta.get("wall_time_s", 0.0)
    start = time.perf_counter()
    bar = _progress(range(result.iterations, iterations), progress, result.iterations, iterations)
    its_batches = None

    def save():
        result.meta = run_metadata(elapsed + time.perf_counter() - start)
        result.optimizer_state = _state_to_json(ostate) if optimizer != "pgd" else None
        if callable(batches) and its_batches is not None:
            result.batches_check = {"iteration": result.iterations - 1,
                                    "fingerprint": fingerprint(its_batches)}
        result.save(save_path)

    for it in bar:
        its_batches = batches(it) if callable(batches) else batches
        try:
            value, grad = hypergradient(dyn, params, lrs, its_batches, objective,
                                        checkpoint_every=checkpoint_every)
            if not (torch.isfinite(grad).all() and torch.isfinite(value)):
                raise DivergenceError(-1, "the hypergradient is not finite", blowup=True)
        except DivergenceError as err:      # keep what was done, say where it diverged
            result.diverged = {"iteration": it, "step": err.step, "message": err.reason,
                               "lrs": result.lrs}
            result.lrs = result.previous if result.previous is not None else result.lrs
            if it >= 1 and average_from is not None and it - 1 >= average_from and mean is not None:
                # the diverged schedule was averaged in at iteration it - 1: take it out again
                n = result.averaged_count - 1
                x = lrs.detach().to("cpu", torch.float64)
                mean = None if n == 0 else (mean * (n + 1) - x) / n
                result.averaged_count = n
                result.averaged = None if mean is None else mean.tolist()
            its_batches = None
            break
        result.previous = result.lrs
        lrs, ostate = _outer_step(optimizer, opts, lrs, grad, ostate, step_size, max_lr)
        result.history.append(float(value))
        result.iterations = it + 1
        result.lrs = lrs.tolist()
        if average_from is not None and it >= average_from:     # η̄ ← η̄ + (η_{it+1} − η̄)/n
            result.averaged_count += 1
            x = lrs.detach().to("cpu", torch.float64)
            mean = x.clone() if mean is None else mean + (x - mean) / result.averaged_count
            result.averaged = mean.tolist()
        if snapshot_every is not None and (it + 1) % snapshot_every == 0:
            result.snapshots.append({"iteration": it + 1, "lrs": _float32(result.lrs),
                                     "averaged": None if result.averaged is None
                                     else _float32(result.averaged)})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(E=f"{float(value):.4f}")
        if callback is not None:
            callback(it, lrs, value, grad)
        if save_path is not None and (it + 1) % save_every == 0:
            save()
    if hasattr(bar, "close"):
        bar.close()
    if save_path is not None:
        save()
    else:
        result.meta = run_metadata(elapsed + time.perf_counter() - start)
        result.optimizer_state = _state_to_json(ostate) if optimizer != "pgd" else None
    return result


def _check_run(iterations, step_size, max_lr, optimizer, optimizer_options) -> dict:
    """Check the arguments of a run; the outer optimiser's options (with defaults)."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    if not isinstance(step_size, (int, float)) or isinstance(step_size, bool) or not (
            step_size > 0) or not math.isfinite(step_size):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    if max_lr is not None and not (isinstance(max_lr, (int, float)) and max_lr > 0
                                   and math.isfinite(max_lr)):
        raise ValueError(f"max_lr must be a positive finite number or None, got {max_lr!r}")
    return _check_optimizer(optimizer, optimizer_options)


def _check_index(name: str, value, least: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < least):
        what = "an iteration index (an integer >= 0)" if least == 0 else f"an integer >= {least}"
        raise ValueError(f"{name} must be {what} or None, got {value!r}")


def _float32(values) -> list:
    """Numbers rounded to float32 precision, each written with the fewest digits that read back
    as the same float32 (``None`` for a non-finite one): the rounding of
    ``hypergrad.experiments.store.float32_trace``, which the core may not import."""
    import numpy as np

    out = []
    for v in values:
        f = np.float32(v)
        out.append(float(str(f)) if math.isfinite(f) else None)
    return out


def _resume_averaging(result: LrsOptResult, average_from, snapshot_every, path) -> None:
    """Carry the saved running average and snapshots on, or start them at the saved iteration
    when that loses nothing and needs no iterate the file lacks (else :class:`ResumeError`)."""
    n = result.iterations
    if average_from != result.average_from:
        need = 0 if average_from is None else max(0, n - average_from)
        if need or result.averaged_count:
            saved = ("it averages nothing (average_from=None, or a file from before averaging)"
                     if result.average_from is None else
                     f"it averages from iteration {result.average_from} "
                     f"({result.averaged_count} iterates averaged)")
            raise ResumeError(
                f"cannot resume {str(path)!r} with average_from={average_from!r}: {saved}, and "
                f"it was saved after {n} iterations, whose iterates it does not keep. Resume "
                f"with average_from={result.average_from!r}"
                + (f" or any average_from >= {n}" if not result.averaged_count else "")
                + ", or delete or move the file to start afresh.")
        result.average_from, result.averaged, result.averaged_count = average_from, None, 0
    if snapshot_every != result.snapshot_every:
        have = [x["iteration"] for x in result.snapshots or []]
        want = [] if snapshot_every is None else list(range(snapshot_every, n + 1, snapshot_every))
        if have != want:
            raise ResumeError(
                f"cannot resume {str(path)!r} with snapshot_every={snapshot_every!r}: it was "
                f"saved after {n} iterations with snapshot_every={result.snapshot_every!r} "
                f"(snapshots of iterations {have}, not {want}). Resume with "
                f"snapshot_every={result.snapshot_every!r}, or delete or move the file.")
        result.snapshot_every = snapshot_every
        result.snapshots = None if snapshot_every is None else list(result.snapshots or [])
    elif snapshot_every is not None and result.snapshots is None:
        result.snapshots = []


def _settings(dyn, params, theta0, lrs, batches, step_size, max_lr, optimizer, opts,
              extra) -> dict:
    """What identifies a run (saved with its result; a resumed file must match it)."""
    optimizer_setting = {"name": optimizer, **opts} if optimizer != "pgd" else "pgd"
    return {"T": len(lrs), "step_size": step_size, "max_lr": max_lr,
            "optimizer": optimizer_setting, "dynamics": repr(dyn),
            "param_shapes": {k: list(v.shape) for k, v in theta0.items()},
            "init_params": fingerprint(params),
            "init_lrs": fingerprint(lrs.tolist()),
            "batches": "function of the iteration" if callable(batches) else fingerprint(batches),
            **(extra or {})}


# ------------------------------------------------------------------ held-out evaluation


def _resume(path, settings: dict, batches) -> LrsOptResult:
    """The saved run at ``path``, if it is this run (else a :class:`ResumeError` that names
    every difference)."""
    result = LrsOptResult.load(path)
    saved = result.settings
    diffs = []
    for key, now in settings.items():
        if key not in saved:
            diffs.append(f"it has no {key!r} (saved by another version or another program)")
        elif saved[key] != now:
            what = f" ({_WHAT[key]})" if key in _WHAT else ""
            diffs.append(f"it was run with {key}={saved[key]!r}, not {now!r}{what}")
    if not diffs and len(result.lrs) != settings["T"]:
        diffs.append(f"its schedule has {len(result.lrs)} entries, not T={settings['T']}")
    check = result.batches_check
    if not diffs and callable(batches) and isinstance(check, dict) and "iteration" in check:
        now = fingerprint(batches(check["iteration"]))
        if now != check.get("fingerprint"):
            diffs.append(f"the minibatches of iteration {check['iteration']} differ "
                         f"({check.get('fingerprint')} saved, {now} now: other minibatches)")
    if diffs:
        raise ResumeError(f"cannot resume {str(path)!r}: " + "; ".join(diffs)
                          + ". Delete or move the file to start afresh.")
    return result


def _progress(it, enabled: bool, initial: int, total: int):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, initial=initial, total=total, desc="LRS-OPT", leave=False)
