"""The nn.Module front end: same numbers as the functional API, parameters updated in place."""

import pytest
import torch

import hypergrad as hg
from hypergrad.models import module_loss
from tests.helpers import DT, max_diff, tiny_mlp


def _data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(16, 5, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g)),
             (torch.randn(16, 5, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g)))
            for _ in range(n)]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_trainer_matches_the_functional_api(batchnorm):
    model = tiny_mlp(1, batchnorm=batchnorm)
    ref_model = tiny_mlp(1, batchnorm=batchnorm)
    data = _data()
    trainer = hg.ModuleTrainer(model, optimizer="sgd", method="marthe", lr=0.1, beta=1e-2, mu="auto", kappa=1e-3,
                               momentum=0.9, weight_decay=1e-3)
    infos = [trainer.step(b, v) for b, v in data]

    # the same with the functional API, written out
    params = {k: v.detach().clone() for k, v in ref_model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in ref_model.named_buffers()} or None

    def loss(p, batch, bufs=None):
        b = {k: v.clone() for k, v in (bufs or {}).items()}
        ref_model.train()
        out = torch.nn.functional.cross_entropy(torch.func.functional_call(ref_model, (p, b), (batch[0],)), batch[1])
        return (out, b) if bufs is not None else out

    def objective_for(batch):
        def objective(p, bufs=None):
            ref_model.eval()
            return torch.nn.functional.cross_entropy(
                torch.func.functional_call(ref_model, (p, bufs or {}), (batch[0],)), batch[1])
        return objective

    dyn = hg.sgd(loss if batchnorm else (lambda p, b: loss(p, b)), momentum=0.9, weight_decay=1e-3)
    tuner = hg.Marthe(dyn, 0.1, 1e-2, mu="auto", kappa=1e-3)
    ostate = tuner.init(params, buffers)
    ref = []
    for b, v in data:
        ostate, info = tuner.step(ostate, b, objective_for(v))
        ref.append(info)
    assert infos == ref
    assert max_diff(dict(model.named_parameters()), tuner.params(ostate)) == 0
    if batchnorm:
        assert max_diff(dict(model.named_buffers()), ostate.state.aux["buffers"]) == 0
        assert int(dict(model.named_buffers())["1.num_batches_tracked"]) == len(data)
    assert trainer.lr == infos[-1].lr and trainer.history.lr == [i.lr for i in infos]


def test_fixed_schedule_equals_torch_optim():
    model, ref = tiny_mlp(2), tiny_mlp(2)
    data = _data(5)
    trainer = hg.ModuleTrainer(model, optimizer="adam", method="fixed", schedule=lambda t: 0.01 * 0.9**t)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)
    for b, _ in data:
        trainer.step(b)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(b[0]), b[1]).backward()
        opt.step()
        sched.step()
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12
    assert trainer.history.lr == pytest.approx([0.01 * 0.9**t for t in range(5)], rel=1e-12)


def test_trainer_checkpoint_and_errors():
    data = _data(6)
    a = hg.ModuleTrainer(tiny_mlp(3), optimizer="sgd", method="hd", lr=0.1, beta=1e-2)
    for b, v in data[:3]:
        a.step(b, v)
    b_ = hg.ModuleTrainer(tiny_mlp(4), optimizer="sgd", method="hd", lr=0.1, beta=1e-2)
    b_.load_state_dict(a.state_dict())
    for b, v in data[3:]:
        assert a.step(b, v) == b_.step(b, v)
    assert max_diff(dict(a.model.named_parameters()), dict(b_.model.named_parameters())) == 0
    with pytest.raises(ValueError, match="validation batch"):
        a.step(data[0][0])
    with pytest.raises(ValueError, match="method"):
        hg.ModuleTrainer(tiny_mlp(), method="newton")
    with pytest.raises(ValueError, match="schedule"):
        hg.ModuleTrainer(tiny_mlp(), method="fixed")
    with pytest.raises(ValueError, match="optimizer"):
        hg.ModuleTrainer(tiny_mlp(), optimizer="lbfgs")
    with pytest.raises(ValueError, match="step 0"):
        hg.ModuleTrainer(tiny_mlp(), method="fixed", schedule=lambda t: -1.0)
    bad = hg.ModuleTrainer(tiny_mlp(), method="fixed", schedule=lambda t: 0.1 if t < 1 else float("nan"))
    bad.step(data[0][0])
    with pytest.raises(ValueError, match="step 1"):
        bad.step(data[1][0])


def test_trainer_blowup_and_divergence_keep_the_last_good_state():
    data = _data(4)
    tr = hg.ModuleTrainer(tiny_mlp(5), optimizer="sgd", method="fixed", schedule=lambda t: 0.1 if t < 2 else 1e4,
                          max_loss_ratio=3.0)
    good = None
    with pytest.raises(hg.DivergenceError, match="blew up") as err:
        for b, _ in data * 3:
            tr.step(b)
            good = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert err.value.step >= 2
    assert all(torch.equal(v, good[k]) for k, v in tr.model.state_dict().items())
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())


def test_trainer_takes_any_tuner():
    """ModuleTrainer(model, tuner) equals the keyword form; both at once is an error."""
    data = _data(4)
    a = hg.ModuleTrainer(tiny_mlp(2), optimizer="sgd", method="rtho", lr=0.1, beta=1e-2,
                         momentum=0.9)
    model = tiny_mlp(2)
    dyn = hg.sgd(module_loss(model), momentum=0.9)
    b_ = hg.ModuleTrainer(model, hg.RTHO(dyn, lr=0.1, beta=1e-2))
    for b, v in data:
        assert a.step(b, v) == b_.step(b, v)
    with pytest.raises(TypeError, match="not both"):
        hg.ModuleTrainer(tiny_mlp(), hg.RTHO(dyn), momentum=0.9)
    # momentum=0 is accepted with Adam (old callers pass it), any other value is an error
    hg.ModuleTrainer(tiny_mlp(), optimizer="adam", method="hd", momentum=0.0)
    with pytest.raises(ValueError, match="momentum"):
        hg.ModuleTrainer(tiny_mlp(), optimizer="adam", method="hd", momentum=0.9)


def test_trainer_loads_the_old_fixed_checkpoint_format():
    data = _data(4)
    sched = lambda t: 0.1 * 0.5**t  # noqa: E731
    a = hg.ModuleTrainer(tiny_mlp(3), method="fixed", schedule=sched)
    for b, _ in data[:2]:
        a.step(b)
    old = {"fixed": a.functional_state._asdict(), "history": vars(a.history)}
    c = hg.ModuleTrainer(tiny_mlp(4), method="fixed", schedule=sched)
    c.load_state_dict(old)
    for b, _ in data[2:]:
        assert a.step(b) == c.step(b)
