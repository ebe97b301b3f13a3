"""Issue 12 for ModuleTrainer: unusual modules train as torch.optim does (unused submodules,
frozen parameters, eval mode), bad inputs get named errors, and load_state_dict is validated
before anything changes and applied at once (weights, buffers, lr, step count, history)."""

import copy

import pytest
import torch

import hypergrad as hg
from tests.helpers import DT, max_diff, tiny_mlp


def _data(n=5, seed=0, d=5):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(16, d, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g)),
             (torch.randn(16, d, dtype=DT, generator=g), torch.randint(0, 3, (16,), generator=g)))
            for _ in range(n)]


class WithUnused(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used = torch.nn.Linear(5, 3)
        self.unused = torch.nn.Linear(5, 3)        # never called in forward

    def forward(self, x):
        return self.used(x)


def _torch_optim_run(model, opt_cls, data, lrs, **kw):
    opt = opt_cls([p for p in model.parameters() if p.requires_grad], lr=lrs[0], **kw)
    for t, (b, _) in enumerate(data):
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(b[0]), b[1]).backward()
        opt.step()
    return model


@pytest.mark.parametrize("optimizer,opt_cls,kw", [
    ("sgd", torch.optim.SGD, dict(momentum=0.9)),
    ("adam", torch.optim.Adam, {}),
])
def test_unused_submodule_trains_as_torch_optim(optimizer, opt_cls, kw):
    data = _data()
    lrs = [0.1, 0.05, 0.1, 0.02, 0.1]
    model, ref = WithUnused().to(DT), WithUnused().to(DT)
    tr = hg.ModuleTrainer(model, optimizer=optimizer, method="fixed", schedule=lrs, **kw)
    for b, _ in data:
        tr.step(b)
    _torch_optim_run(ref, opt_cls, data, lrs, **kw)
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12
    assert torch.equal(model.unused.weight, WithUnused().to(DT).unused.weight)


def test_unused_submodule_with_marthe():
    model = WithUnused().to(DT)
    tr = hg.ModuleTrainer(model, optimizer="sgd", method="marthe", lr=0.1, beta=1e-3, momentum=0.9)
    w0 = model.unused.weight.detach().clone()
    for b, v in _data():
        info = tr.step(b, v)
        assert info.lr > 0
    assert torch.equal(model.unused.weight, w0)


def test_frozen_parameters_are_left_alone_as_torch_optim_does():
    data = _data()
    lrs = [0.1] * 5
    model, ref = tiny_mlp(3), tiny_mlp(3)
    for m in (model, ref):
        m[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    tr = hg.ModuleTrainer(model, optimizer="sgd", method="fixed", schedule=lrs, momentum=0.9,
                          weight_decay=1e-2)
    for b, _ in data:
        tr.step(b)
    _torch_optim_run(ref, torch.optim.SGD, data, lrs, momentum=0.9, weight_decay=1e-2)
    assert torch.equal(model[0].weight, frozen)
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12
    assert "0.weight" not in tr.functional_state.w["params"]
    # online too: frozen stays frozen
    model2 = tiny_mlp(3)
    model2[0].weight.requires_grad_(False)
    tr2 = hg.ModuleTrainer(model2, optimizer="adam", method="marthe", lr=0.01, beta=1e-4)
    for b, v in data:
        tr2.step(b, v)
    assert torch.equal(model2[0].weight, frozen)


def test_no_trainable_parameters_is_a_clear_error():
    model = tiny_mlp(1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        hg.ModuleTrainer(model, method="fixed", schedule=[0.1])
    with pytest.raises(ValueError, match="no trainable parameters"):
        hg.ModuleTrainer(torch.nn.ReLU(), method="fixed", schedule=[0.1])


def test_eval_mode_batchnorm_is_respected():
    """Decision: the training loss respects the module's mode, as a plain loop does: after
    model.eval(), BatchNorm normalises with its running statistics and leaves them unchanged;
    the weights move as torch.optim moves them."""
    data = _data()
    lrs = [0.1] * 6
    model, ref = tiny_mlp(4, batchnorm=True), tiny_mlp(4, batchnorm=True)
    for b, _ in data[:2]:            # give the running statistics non-trivial values
        model(b[0]), ref(b[0])
    model.eval(), ref.eval()
    bufs = {k: v.clone() for k, v in model.named_buffers()}
    tr = hg.ModuleTrainer(model, optimizer="sgd", method="fixed", schedule=lrs, momentum=0.9)
    for b, _ in data:
        tr.step(b)
    _torch_optim_run(ref, torch.optim.SGD, data, lrs, momentum=0.9)
    assert not model.training
    assert all(torch.equal(v, bufs[k]) for k, v in model.named_buffers())
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12
    # back to train mode: the running statistics move again
    model.train()
    tr.step(data[0][0])
    assert not torch.equal(dict(model.named_buffers())["1.running_mean"], bufs["1.running_mean"])
    assert int(dict(model.named_buffers())["1.num_batches_tracked"]) == int(bufs["1.num_batches_tracked"]) + 1


def test_train_mode_batchnorm_matches_torch_optim():
    data = _data()
    lrs = [0.1] * 5
    model, ref = tiny_mlp(4, batchnorm=True), tiny_mlp(4, batchnorm=True)
    tr = hg.ModuleTrainer(model, optimizer="sgd", method="fixed", schedule=lrs)
    for b, _ in data:
        tr.step(b)
    _torch_optim_run(ref, torch.optim.SGD, data, lrs)
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12
    assert max_diff(dict(model.named_buffers()), dict(ref.named_buffers())) < 1e-12


# ----------------------------------------------------------------- checkpoints
def _trained(seed=3, n=3, **kw):
    opts = dict(optimizer="sgd", method="marthe", lr=0.1, beta=1e-2, momentum=0.9, mu="auto") | kw
    tr = hg.ModuleTrainer(tiny_mlp(seed, batchnorm=True), **opts)
    for b, v in _data(n):
        tr.step(b, v)
    return tr


def test_load_state_dict_writes_weights_buffers_lr_and_step_at_once():
    """Looks at the module right after loading (no step in between): a load that forgets to
    write the weights or buffers back, or to restore lr or the step count, fails here."""
    a = _trained()
    sd = copy.deepcopy(a.state_dict())
    b_ = hg.ModuleTrainer(tiny_mlp(9, batchnorm=True), optimizer="sgd", method="marthe", lr=0.1,
                          beta=1e-2, momentum=0.9, mu="auto")
    assert max_diff(dict(a.model.named_parameters()), dict(b_.model.named_parameters())) > 0
    b_.load_state_dict(sd)
    assert max_diff(dict(a.model.named_parameters()), dict(b_.model.named_parameters())) == 0
    assert all(torch.equal(v, dict(b_.model.named_buffers())[k]) for k, v in a.model.named_buffers())
    assert b_.lr == a.lr and b_.state.t == a.state.t == 3
    assert b_.history.lr == a.history.lr and b_.history.loss == a.history.loss
    assert b_.state.beta == a.state.beta and b_.state.mu == a.state.mu and b_.state.rho == a.state.rho
    assert max_diff(b_.state.Z["params"], a.state.Z["params"]) == 0
    assert max_diff(b_.state.state.w["momentum"], a.state.state.w["momentum"]) == 0
    # and the next steps are identical
    for bt, v in _data(2, seed=5):
        assert a.step(bt, v) == b_.step(bt, v)


def test_load_state_dict_at_step_zero_restores_lr():
    a = hg.ModuleTrainer(tiny_mlp(1), optimizer="sgd", method="hd", lr=0.3, beta=1e-2)
    b_ = hg.ModuleTrainer(tiny_mlp(1), optimizer="sgd", method="hd", lr=0.3, beta=1e-2)
    b_.lr = 123.0
    b_.load_state_dict(a.state_dict())
    assert b_.lr == 0.3 and b_.state.t == 0


def _snapshot(tr):
    return (copy.deepcopy(tr.state_dict()), {k: v.clone() for k, v in tr.model.state_dict().items()},
            tr.lr)


def _unchanged(tr, snap):
    sd, msd, lr = snap
    now = tr.state_dict()
    assert tr.lr == lr and now["history"] == sd["history"] and now["online"]["t"] == sd["online"]["t"]
    assert all(torch.equal(v, msd[k]) for k, v in tr.model.state_dict().items())


@pytest.mark.parametrize("other,match", [
    (dict(momentum=0.0), "dynamics"),                       # plain SGD vs momentum
    (dict(momentum=0.5), "dynamics"),                       # another hyperparameter
    (dict(optimizer="adam", momentum=0.0), "dynamics"),
    (dict(method="hd", mu=None), "tuner"),
    (dict(mu=1.0), "tuner"),
])
def test_load_state_dict_refuses_another_run_and_changes_nothing(other, match):
    src = _trained()
    opts = dict(optimizer="sgd", method="marthe", lr=0.1, beta=1e-2, momentum=0.9, mu="auto") | other
    opts = {k: v for k, v in opts.items() if v is not None}
    dst = hg.ModuleTrainer(tiny_mlp(4, batchnorm=True), **opts)
    bt, v = _data(1, seed=8)[0]
    dst.step(bt, v)
    snap = _snapshot(dst)
    with pytest.raises(ValueError, match=match):
        dst.load_state_dict(src.state_dict())
    _unchanged(dst, snap)


def test_load_state_dict_refuses_other_shapes_names_and_dtypes():
    src = _trained()
    sd = src.state_dict()
    for model, match in [(tiny_mlp(4, sizes=(5, 8, 3), batchnorm=True), "shape|entry"),
                         (tiny_mlp(4, batchnorm=False), "missing|unexpected|buffers"),
                         (tiny_mlp(4, batchnorm=True).float(), "float")]:
        dst = hg.ModuleTrainer(model, optimizer="sgd", method="marthe", lr=0.1, beta=1e-2,
                               momentum=0.9, mu="auto")
        snap = _snapshot(dst)
        with pytest.raises(ValueError, match=match):
            dst.load_state_dict(sd)
        _unchanged(dst, snap)
    # the same without the metadata (older checkpoints): the layout check still refuses
    bare = {k: v for k, v in sd.items() if k != "meta"}
    dst = hg.ModuleTrainer(tiny_mlp(4, batchnorm=True), optimizer="sgd", method="marthe", lr=0.1,
                           beta=1e-2, momentum=0.0, mu="auto")
    snap = _snapshot(dst)
    with pytest.raises(ValueError, match="momentum"):
        dst.load_state_dict(bare)
    _unchanged(dst, snap)


@pytest.mark.parametrize("bad", [{}, [], {"online": {}}, {"history": {}},
                                 "mutate_history_keys", "mutate_history_lengths",
                                 "mutate_format"])
def test_load_state_dict_refuses_garbage_and_changes_nothing(bad):
    src = _trained()
    if isinstance(bad, str):
        sd = copy.deepcopy(src.state_dict())
        if bad == "mutate_history_keys":
            sd["history"]["bogus"] = []
        elif bad == "mutate_history_lengths":
            sd["history"]["lr"] = sd["history"]["lr"][:-1]
        else:
            sd["online"]["format"] = "something else"
        bad = sd
    dst = _trained(seed=5, n=1)
    snap = _snapshot(dst)
    with pytest.raises(ValueError):
        dst.load_state_dict(bad)
    _unchanged(dst, snap)


# ----------------------------------------------------------------- bad inputs
def test_trainer_bad_inputs_are_named():
    with pytest.raises(TypeError, match="nn.Module"):
        hg.ModuleTrainer({"w": torch.ones(2)}, method="fixed", schedule=[0.1])
    for ratio in (0, -1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="max_loss_ratio"):
            hg.ModuleTrainer(tiny_mlp(), method="fixed", schedule=[0.1], max_loss_ratio=ratio)
    mixed = tiny_mlp()
    mixed[0].float()
    with pytest.raises(ValueError, match="mixes dtypes"):
        hg.ModuleTrainer(mixed, method="fixed", schedule=[0.1])


def test_trainer_batch_errors_name_the_step():
    tr = hg.ModuleTrainer(tiny_mlp(2), optimizer="sgd", method="hd", lr=0.1, beta=1e-2)
    data = _data(3)
    tr.step(*data[0])
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    x32 = data[1][0][0].float()
    with pytest.raises(RuntimeError, match=r"step 1.*float32 data but the weights are torch.float64"):
        tr.step((x32, data[1][0][1]), data[1][1])
    with pytest.raises((ValueError, RuntimeError), match="step 1"):
        tr.step((data[1][0][0][:, :4], data[1][0][1]), data[1][1])        # wrong width
    with pytest.raises((ValueError, RuntimeError, TypeError), match="step 1"):
        tr.step(data[1][0][0], data[1][1])                                 # no labels
    assert all(torch.equal(v, before[k]) for k, v in tr.model.state_dict().items())
    assert tr.state.t == 1 and len(tr.history.lr) == 1
    tr.step(*data[1])                                                      # still usable
    assert tr.state.t == 2


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(5, 5), torch.nn.Linear(5, 5)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))[:, :3]


def test_tied_weights_train_as_torch_optim():
    data = _data(4)
    model, ref = Tied().to(DT), Tied().to(DT)
    tr = hg.ModuleTrainer(model, optimizer="sgd", method="fixed", schedule=[0.1] * 4, momentum=0.9)
    _torch_optim_run(ref, torch.optim.SGD, data, [0.1] * 4, momentum=0.9)
    for b, _ in data:
        tr.step(b)
    assert model.b.weight is model.a.weight
    assert max_diff(dict(model.named_parameters()), dict(ref.named_parameters())) < 1e-12


def test_validation_batch_errors_and_short_schedules_name_the_step():
    data = _data(3)
    tr = hg.ModuleTrainer(tiny_mlp(2), optimizer="sgd", method="hd", lr=0.1, beta=1e-2)
    tr.step(*data[0])
    with pytest.raises(RuntimeError, match="objective at step 1 failed"):
        tr.step(data[1][0], (data[1][1][0][:, :4], data[1][1][1]))
    assert tr.state.t == 1
    fixed = hg.ModuleTrainer(tiny_mlp(2), method="fixed", schedule=[0.1, 0.1])
    fixed.step(data[0][0]), fixed.step(data[1][0])
    with pytest.raises(ValueError, match="step 2"):
        fixed.step(data[2][0])


def test_old_fixed_format_is_applied_at_once():
    sched = [0.1, 0.05, 0.02, 0.01]
    a = hg.ModuleTrainer(tiny_mlp(3, batchnorm=True), method="fixed", schedule=sched)
    for b, _ in _data(2):
        a.step(b)
    old = {"fixed": a.functional_state._asdict(), "history": vars(a.history)}
    c = hg.ModuleTrainer(tiny_mlp(4, batchnorm=True), method="fixed", schedule=sched)
    c.load_state_dict(old)
    assert max_diff(dict(a.model.named_parameters()), dict(c.model.named_parameters())) == 0
    assert all(torch.equal(v, dict(c.model.named_buffers())[k]) for k, v in a.model.named_buffers())
    assert c.state.t == 2 and c.lr == a.lr == 0.05
    bad = {"fixed": {**a.functional_state._asdict(), "w": {"params": {"x": torch.ones(1)}}},
           "history": vars(a.history)}
    snap = _snapshot(c)
    with pytest.raises(ValueError, match="missing"):
        c.load_state_dict(bad)
    _unchanged(c, snap)


def test_module_loss_train_none_follows_each_submodules_mode():
    """train=None leaves the flags alone (a BatchNorm put in eval() alone keeps its running
    statistics); the default train=True forces train mode and restores the flags after."""
    from hypergrad.models import module_loss

    net = tiny_mlp(6, batchnorm=True)
    net[1].eval()                                    # only the BatchNorm frozen
    params = {k: v.detach() for k, v in net.named_parameters()}
    bufs = {k: v.detach().clone() for k, v in net.named_buffers()}
    (x, y), _ = _data(1)[0]
    _, new = module_loss(net, train=None)(params, (x, y), bufs)
    assert all(torch.equal(new[k], bufs[k]) for k in bufs)
    _, new = module_loss(net)(params, (x, y), bufs)
    assert not torch.equal(new["1.running_mean"], bufs["1.running_mean"])
    assert net.training and not net[1].training      # flags restored
