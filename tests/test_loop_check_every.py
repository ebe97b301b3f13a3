"""``run_online``'s ``check_every`` (issue 25): when the divergence verdict is read from the
device, at which step a diverging run stops, and what it records, exactly as
:func:`hypergrad.loop.run_online` documents it. Only the step named in a divergence was
tested before, so a check made one step early or late went unnoticed."""

from __future__ import annotations

import math

import pytest
import torch

import hypergrad as hg
from hypergrad import loop
from tests.helpers import problem

pytestmark = pytest.mark.usefixtures("one_thread")

N = 12
_, LOSS, PARAMS, BATCHES, OBJECTIVE = problem(T=N)
BATCHES = BATCHES[:N]


class Spy:
    """A MARTHE tuner that records the steps it runs (``ran``: their ``t``) and, from step
    ``bad`` on, reports a failure: a non-finite training loss (``"nan"``) or one 1000 times the
    first (``"blowup"``, the blow-up rule's)."""

    def __init__(self, bad: int | None = None, kind: str = "nan"):
        self.tuner = hg.Marthe(hg.sgd(LOSS), lr=0.05, beta=1e-3, kappa=1e-3)
        self.bad, self.kind, self.ran = bad, kind, []

    def __getattr__(self, name):
        return getattr(self.tuner, name)

    def step(self, ostate, batch, objective, *, check=True):
        ostate, info = self.tuner.step(ostate, batch, objective, check=check)
        self.ran.append(info.t)
        if self.bad is not None and info.t >= self.bad:
            loss = info.loss * math.nan if self.kind == "nan" else info.loss * 1000.0
            info = info._replace(loss=loss)
        return ostate, info


@pytest.fixture
def reads(monkeypatch):
    """After how many steps of the run each device read of the verdict was made."""
    spies: list[Spy] = []
    made: list[int] = []
    original = loop._read_verdict

    def counting(fail_t, fail_code):
        made.append(len(spies[-1].ran))
        return original(fail_t, fail_code)

    monkeypatch.setattr(loop, "_read_verdict", counting)
    return spies, made


def _expected_reads(n: int, k: int | None, stop: int | None = None) -> list[int]:
    """Where the docstring says the reads are: after steps k, 2k, … and n (if not one of
    them), up to the step ``stop`` where the run raises."""
    at = [] if k is None else list(range(k, n + 1, k))
    if n and (not at or at[-1] != n):
        at.append(n)
    return at if stop is None else [a for a in at if a <= stop]


@pytest.mark.parametrize("n", [1, 2, 5, 11, 12])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 12, 13, None])
def test_a_run_reads_the_device_exactly_where_documented(reads, n, k):
    spies, made = reads
    spies.append(spy := Spy())
    calls = []
    ostate, hist = hg.run_online(spy, PARAMS, BATCHES[:n], OBJECTIVE, check_every=k,
                                 callback=lambda o, info: calls.append(info.t))
    assert made == _expected_reads(n, k)
    assert len(made) == (1 if k is None else math.ceil(n / k))
    assert spy.ran == calls == list(range(n)) and ostate.t == n
    assert all(len(getattr(hist, f)) == n for f in loop._FIELDS)


def test_no_batches_no_read(reads):
    spies, made = reads
    spies.append(spy := Spy())
    ostate, hist = hg.run_online(spy, PARAMS, [], OBJECTIVE, check_every=3)
    assert made == [] and spy.ran == [] and hist == loop.History.empty()


@pytest.mark.parametrize("kind", ["nan", "blowup"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 12, None])
@pytest.mark.parametrize("s", [0, 1, 2, 3, 4, 5, 7, 11])
def test_a_divergence_at_step_s_stops_the_run_at_the_first_read_after_it(reads, s, k, kind):
    if kind == "blowup" and s == 0:
        pytest.skip("the blow-up rule compares with step 0's loss: step 0 cannot blow up")
    spies, made = reads
    spies.append(spy := Spy(bad=s, kind=kind))
    calls = []
    with pytest.raises(hg.DivergenceError) as err:
        hg.run_online(spy, PARAMS, BATCHES, OBJECTIVE, check_every=k,
                      callback=lambda o, info: calls.append(info.t))
    stop = N if k is None else min(math.ceil((s + 1) / k) * k, N)
    assert err.value.step == s                       # the first failing step, not the read's
    assert (err.value.reason.startswith("the training loss blew up") if kind == "blowup"
            else err.value.reason == "the training loss is not finite")
    assert spy.ran == list(range(stop))              # it stopped at the first read after s
    assert made == _expected_reads(N, k, stop) and made[-1] == stop
    periodic = k is not None and stop % k == 0       # else the read at the end, after all
    assert calls == list(range(stop - 1 if periodic else stop))   # callbacks (stop == N)


@pytest.mark.parametrize("k", [1, 3, 4, None])
def test_steps_and_reads_count_from_the_start_of_the_call_when_resumed(reads, k):
    """A run resumed from ``ostate`` (``t0 = 5``) counts its reads from its own first step;
    the error names the step's ``t``."""
    spies, made = reads
    t0, n = 5, 7
    spies.append(first := Spy())
    ostate, _ = hg.run_online(first, PARAMS, BATCHES[:t0], OBJECTIVE, check_every=k)
    spies.append(spy := Spy(bad=t0 + 1))             # the 2nd step of the resumed call
    made.clear()
    with pytest.raises(hg.DivergenceError) as err:
        hg.run_online(spy, PARAMS, BATCHES[t0:t0 + n], OBJECTIVE, check_every=k, ostate=ostate)
    stop = n if k is None else min(math.ceil(2 / k) * k, n)
    assert err.value.step == t0 + 1
    assert spy.ran == list(range(t0, t0 + stop)) and made == _expected_reads(n, k, stop)
    spies.append(ok := Spy())
    made.clear()
    ostate, hist = hg.run_online(ok, PARAMS, BATCHES[t0:t0 + n], OBJECTIVE, check_every=k,
                                 ostate=ostate)
    assert made == _expected_reads(n, k) and len(hist.lr) == n and ostate.t == t0 + n


SYNCS = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy")


@pytest.mark.parametrize(("n", "k"), [(12, 1), (12, 3), (12, 5), (12, 12), (7, None)])
def test_a_run_that_does_not_diverge_syncs_once_per_read_and_once_for_its_history(
        monkeypatch, n, k):
    """Counted on the tensors themselves (not through ``_read_verdict``): ``⌈n/k⌉`` reads of
    the verdict and one of the whole history, nothing else."""
    spy = Spy()
    ostate = spy.init(PARAMS)
    calls = []

    def counted(name):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, **kw):
            calls.append(name)
            return original(self, *a, **kw)

        return wrapped

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    hg.run_online(spy, PARAMS, BATCHES[:n], OBJECTIVE, check_every=k, ostate=ostate)
    monkeypatch.undo()
    assert len(calls) == (1 if k is None else math.ceil(n / k)) + 1, calls
