"""HD with the training loss as objective is Baydin et al.'s SGD-HD, written out by hand,
exactly when the objective includes the weight-decay term (their hypergradient uses the
decayed gradient, the one SGD steps along)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import grad

import hypergrad as hg

f64 = torch.float64
WD, LR0, BETA, STEPS = 1e-2, 0.1, 1e-2, 25


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g, dtype=f64)
    y = (x @ torch.randn(5, 3, generator=g, dtype=f64)).argmax(1)
    params = {"W": torch.randn(5, 3, generator=g, dtype=f64) * 0.1,
              "b": torch.zeros(3, dtype=f64)}
    batches = [(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]) for i in range(STEPS)]

    def loss(p, batch):
        return F.cross_entropy(batch[0] @ p["W"] + p["b"], batch[1])

    return params, batches, loss


def _decay(p):
    return 0.5 * WD * sum(v.square().sum() for v in p.values())


def _baydin_sgd_hd(params, batches, loss):
    """SGD-HD (Baydin et al., 2018, Alg. 1 with weight decay in the gradient): the rates."""
    theta, alpha, g_prev, rates = dict(params), LR0, None, []
    for batch in batches:
        g = {k: v + WD * theta[k] for k, v in grad(loss)(theta, batch).items()}
        if g_prev is not None:
            alpha = alpha + BETA * float(sum((g[k] * g_prev[k]).sum() for k in g))
        rates.append(alpha)
        theta = {k: theta[k] - alpha * g[k] for k in theta}
        g_prev = g
    return rates


def _hd(params, batches, loss, with_decay):
    objectives = [(lambda p, b=b: loss(p, b) + _decay(p)) if with_decay
                  else (lambda p, b=b: loss(p, b)) for b in batches]
    tuner = hg.HD(hg.sgd(loss, weight_decay=WD), lr=LR0, beta=BETA)
    return hg.run_online(tuner, params, batches, objectives)[1].lr


def test_hd_with_the_decayed_training_loss_is_baydin_sgd_hd():
    params, batches, loss = _problem()
    baydin = torch.tensor(_baydin_sgd_hd(params, batches, loss), dtype=f64)
    ours = torch.tensor(_hd(params, batches, loss, with_decay=True), dtype=f64)
    assert bool((baydin > 0).all())                  # the clip at 0 never acts here
    torch.testing.assert_close(ours, baydin, rtol=1e-12, atol=0.0)


def test_without_the_decay_term_it_is_not():
    params, batches, loss = _problem()
    baydin = torch.tensor(_baydin_sgd_hd(params, batches, loss), dtype=f64)
    plain = torch.tensor(_hd(params, batches, loss, with_decay=False), dtype=f64)
    assert ((plain - baydin).abs().max() / baydin.abs().max()).item() > 1e-6
