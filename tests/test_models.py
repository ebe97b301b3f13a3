import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

from hypergrad.models import (
    MLP,
    BatchNorm2d,
    SmallCNN,
    accuracy,
    evaluate,
    functional,
    module_loss,
    module_objective,
    resnet18,
    vgg11_bn,
)


def _torch_bn_copy(module):
    """Deep copy of ``module`` whose BatchNorm2d layers are torch's own."""
    ref = copy.deepcopy(module)
    for m in ref.modules():
        if isinstance(m, BatchNorm2d):
            m.__class__ = nn.BatchNorm2d
    return ref


def test_mlp_shape_and_parameter_count():
    net = MLP()
    n = sum(p.numel() for p in net.parameters())
    assert n == 784 * 500 + 500 + 2 * (500 * 500 + 500) + 500 * 10 + 10
    assert net(torch.randn(3, 784)).shape == (3, 10)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert MLP((4, 3, 2), activation="tanh")(torch.randn(5, 4)).shape == (5, 2)


def test_small_cnn_shapes():
    net = SmallCNN()
    assert net(torch.randn(4, 784)).shape == (4, 10)
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert SmallCNN(batchnorm=False, width=4)(torch.randn(2, 784)).shape == (2, 10)
    assert next(SmallCNN(batchnorm=False).buffers(), None) is None


@pytest.mark.parametrize("make, classes", [(vgg11_bn, 10), (resnet18, 100)])
def test_cifar_nets_forward_backward(make, classes):
    torch.manual_seed(0)
    net = make(num_classes=classes, width=8)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, classes, (4,))
    out = net(x)
    assert out.shape == (4, classes)
    F.cross_entropy(out, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_cifar_net_structure():
    vgg = vgg11_bn(width=64)
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert vgg.classifier.in_features == 512
    res = resnet18(width=64)
    assert len(res.layers) == 8 and res.fc.in_features == 512 and res.fc.out_features == 100
    assert [b.conv1.stride[0] for b in res.layers] == [1, 1, 2, 1, 2, 1, 2, 1]


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_equals_torch(momentum, affine):
    torch.manual_seed(0)
    ours = BatchNorm2d(3, momentum=momentum, affine=affine).double()
    if affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.uniform_(-1, 1)
    ref = _torch_bn_copy(ours)
    assert type(ref) is nn.BatchNorm2d
    for _ in range(3):  # train mode: outputs, input gradients and running statistics
        x = (torch.randn(5, 3, 4, 4, dtype=torch.float64) * 2 + 1).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        out, out2 = ours(x), ref(x2)
        torch.testing.assert_close(out, out2, rtol=0, atol=1e-12)
        g = torch.randn_like(out)
        out.backward(g)
        out2.backward(g)
        torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=1e-12)
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buf, rtol=0, atol=1e-12)
    assert ours.num_batches_tracked.item() == 3
    ours.eval()
    ref.eval()
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)
    # torch's state dicts load into ours and vice versa
    ours.load_state_dict(ref.state_dict())


def test_batchnorm_needs_two_values_per_channel():
    with pytest.raises(ValueError, match="more than 1 value"):
        BatchNorm2d(2)(torch.randn(1, 2, 1, 1))


def test_functional_copies():
    net = SmallCNN(width=4)
    params, buffers = functional(net)
    assert set(params) == {k for k, _ in net.named_parameters()}
    assert "features.1.num_batches_tracked" in buffers
    assert buffers["features.1.num_batches_tracked"].dtype == torch.int64
    params["classifier.bias"].add_(1)
    assert not torch.equal(params["classifier.bias"], net.classifier.bias)
    assert not params["classifier.bias"].requires_grad


def test_module_loss_without_buffers():
    torch.manual_seed(0)
    net = MLP((6, 5, 3))
    params, buffers = functional(net)
    assert buffers == {}
    loss = module_loss(net)
    assert loss.has_buffers is False
    batch = (torch.randn(8, 6), torch.randint(0, 3, (8,)))
    value = loss(params, batch)
    assert value.shape == () and torch.allclose(value, F.cross_entropy(net(batch[0]), batch[1]))
    g = grad(loss)(params, batch)
    assert g.keys() == params.keys()


def test_module_loss_with_batchnorm_under_forward_over_reverse():
    torch.manual_seed(0)
    net = SmallCNN(width=3).double()
    params, buffers = functional(net)
    before = {k: v.clone() for k, v in buffers.items()}
    x, y = torch.randn(6, 784, dtype=torch.float64), torch.randint(0, 10, (6,))
    batch = (x, y)
    loss = module_loss(net)
    assert loss.has_buffers is True

    # reference: an ordinary train-mode forward of (a copy of) the module, with torch's BN
    ref = _torch_bn_copy(net).train()
    ref_out = F.cross_entropy(ref(x), y)
    ref_buffers = dict(ref.named_buffers())

    def check(value, new_buffers):
        torch.testing.assert_close(value, ref_out, rtol=0, atol=1e-12)
        assert new_buffers.keys() == ref_buffers.keys()
        for k, v in ref_buffers.items():
            torch.testing.assert_close(new_buffers[k], v, rtol=0, atol=1e-12)
        assert new_buffers["features.1.num_batches_tracked"].item() == 1
        assert not torch.equal(
            new_buffers["features.1.running_mean"], before["features.1.running_mean"]
        )
        for k, v in before.items():  # the inputs are not mutated
            assert torch.equal(buffers[k], v)

    check(*loss(params, batch, buffers))

    tangent = {k: torch.randn_like(v) for k, v in params.items()}
    g_fn = grad(lambda q: loss(q, batch, buffers), has_aux=True)
    (g, new_buffers), (hvp, buffer_tangents) = jvp(g_fn, (params,), (tangent,))
    check(ref_out, new_buffers)
    assert all(torch.count_nonzero(t) == 0 for t in buffer_tangents.values())

    # the forward-over-reverse product is the Hessian-vector product: compare with
    # central finite differences of the gradient
    eps = 1e-6
    shifted = [{k: v + s * eps * tangent[k] for k, v in params.items()} for s in (1, -1)]
    g_plus, g_minus = (g_fn(p)[0] for p in shifted)
    for k in params:
        torch.testing.assert_close(
            hvp[k], (g_plus[k] - g_minus[k]) / (2 * eps), rtol=1e-5, atol=1e-6
        )

    value, pullback, new_buffers = vjp(lambda p: loss(p, batch, buffers), params, has_aux=True)
    check(value, new_buffers)
    (cot,) = pullback(torch.ones((), dtype=torch.float64))
    for k in params:
        torch.testing.assert_close(cot[k], g[k], rtol=1e-10, atol=1e-12)

    # same with torch's own BatchNorm2d (what a user-supplied model would use)
    ref_params, ref_buffers0 = functional(_torch_bn_copy(net))
    ref_loss = module_loss(_torch_bn_copy(net))
    (g2, _), (hvp2, _) = jvp(
        grad(lambda q: ref_loss(q, batch, ref_buffers0), has_aux=True), (ref_params,), (tangent,)
    )
    for k in params:
        torch.testing.assert_close(hvp2[k], hvp[k], rtol=1e-9, atol=1e-12)


def test_module_objective_and_accuracy():
    torch.manual_seed(0)
    net = SmallCNN(width=3)
    params, buffers = functional(net)
    loss = module_loss(net)
    x, y = torch.randn(20, 784), torch.randint(0, 10, (20,))
    _, trained = loss(params, (x, y), buffers)  # non-trivial running statistics
    net.train()
    objective = module_objective(net, (x, y), buffers=trained)
    value = objective(params)
    assert net.training  # the module's mode is restored
    with torch.no_grad():
        expected = F.cross_entropy(functional_call(net.eval(), (params, trained), (x,)), y)
    torch.testing.assert_close(value, expected)
    assert grad(objective)(params).keys() == params.keys()
    # train=True uses batch statistics and leaves the module's buffers alone
    own = {k: v.clone() for k, v in net.named_buffers()}
    train_value = module_objective(net, (x, y), train=True)(params)
    torch.testing.assert_close(train_value, loss(params, (x, y), buffers)[0])
    assert all(torch.equal(v, own[k]) for k, v in net.named_buffers())

    acc = accuracy(net, params, x, y, buffers=trained, batch_size=7)
    with torch.no_grad():
        pred = functional_call(net.eval(), (params, trained), (x,)).argmax(1)
    assert acc == pytest.approx((pred == y).float().mean().item())
    assert 0.0 <= accuracy(MLP((784, 10)), functional(MLP((784, 10)))[0], x, y) <= 1.0


def test_evaluate_is_loss_and_accuracy_with_own_or_given_weights():
    torch.manual_seed(1)
    net = SmallCNN(width=3)
    params, buffers = functional(net)
    x, y = torch.randn(23, 784), torch.randint(0, 10, (23,))
    net.train()
    own = evaluate(net, x, y, batch_size=5)
    assert net.training                                      # the mode is restored
    given = evaluate(net, x, y, params, buffers, batch_size=7)
    with torch.no_grad():
        out = net.eval()(x)
    assert own["loss"] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert own["acc"] == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert given["loss"] == pytest.approx(own["loss"], rel=1e-5) and given["acc"] == own["acc"]
    assert accuracy(net, params, x, y, buffers) == given["acc"]
    bad = {k: torch.full_like(v, float("nan")) for k, v in params.items()}
    assert evaluate(net, x, y, bad, buffers)["loss"] is None
