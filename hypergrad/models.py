"""Networks of the experiments of Donini et al. (2020), Sec. 5, and helpers to use them
functionally (``torch.func.functional_call``) as the library's dynamics expect.

* :class:`MLP`: the MNIST network (3 hidden layers of 500 ReLU units);
* :class:`SmallCNN`: a small convolutional net for 28x28 MNIST, cheap enough for long unrolls;
* :func:`vgg11_bn`: VGG-11 with batch normalisation (CIFAR-10 experiments);
* :func:`resnet18`: CIFAR ResNet-18 (CIFAR-100 experiments).

The convolutional nets use :class:`BatchNorm2d`, a drop-in replacement of torch's written with
plain tensor operations, so that forward-over-reverse differentiation (``torch.func.jvp`` of
``torch.func.grad``) never depends on the fused, device-specific batch-norm kernels' derivative
rules.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = [
    "MLP",
    "BatchNorm2d",
    "ResNet",
    "SmallCNN",
    "VGG",
    "accuracy",
    "evaluate",
    "functional",
    "module_loss",
    "module_objective",
    "resnet18",
    "vgg11_bn",
]


class BatchNorm2d(nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` computed with plain, composable tensor operations.

    Same parameters, buffers, state dict and numbers as torch's layer (train and eval mode):
    training normalises with the biased batch variance and updates the running statistics from
    the *detached* batch statistics, ``running_var`` with the unbiased variance, and increments
    ``num_batches_tracked`` (``momentum=None`` gives the cumulative average). Being made of
    ordinary ops, it differentiates under ``torch.func.jvp``/``vjp``/``grad`` in any nesting
    without the fused kernels' second-order rules (torch gets those from deprecated TorchScript
    decompositions); the running-stat updates land in the buffers ``functional_call`` supplied.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        shape = (1, -1, 1, 1)
        if self.training or self.running_mean is None:  # batch statistics, two-pass variance
            mean = x.mean(dim=(0, 2, 3))
            xc = x - mean.view(shape)
            var = xc.square().mean(dim=(0, 2, 3))
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, x.numel() // x.shape[1])
        else:
            mean, var = self.running_mean, self.running_var
            xc = x - mean.view(shape)
        scale = torch.rsqrt(var + self.eps)
        if not self.affine:
            return xc * scale.view(shape)
        return torch.addcmul(self.bias.view(shape), xc, (scale * self.weight).view(shape))

    def _update_running_stats(self, mean, var, n):
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {n}")
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        with torch.no_grad():
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach(), alpha=m * n / (n - 1))


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


class MLP(nn.Sequential):
    """Fully connected net, ``sizes`` from input to output, ``activation`` between layers.

    The default is the MNIST network of Donini et al. (2020), Sec. 5: 784-500-500-500-10 with
    ReLU. Inputs are flattened, so ``(N, 784)`` and ``(N, 1, 28, 28)`` both work.
    """

    def __init__(self, sizes=(784, 500, 500, 500, 10), activation: str = "relu"):
        layers = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            if i:
                layers.append(_ACTIVATIONS[activation]())
            layers.append(nn.Linear(n_in, n_out))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Two conv blocks (3x3 conv, [BatchNorm], ReLU, 2x2 max-pool; ``width`` then ``2*width``
    channels) and a linear layer, for 28x28 images. Flattened ``(N, 784)`` input is accepted."""

    def __init__(self, in_channels=1, num_classes=10, width=16, batchnorm=True):
        super().__init__()
        self.in_channels = in_channels

        def block(c_in, c_out):
            norm = [BatchNorm2d(c_out)] if batchnorm else []
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm)
            return [conv, *norm, nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width))
        self.classifier = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x):
        """Logits of a batch ``x`` of 28x28 images (flattened rows are reshaped first)."""
        if x.dim() == 2:
            x = x.reshape(len(x), self.in_channels, 28, 28)
        return self.classifier(self.features(x).flatten(1))


VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """CIFAR VGG: ``cfg`` of conv widths (3x3 conv, BatchNorm, ReLU) and ``"M"`` (2x2 max-pool),
    then one linear classifier on the 1x1 feature map of 32x32 inputs."""

    def __init__(self, cfg=VGG11_CFG, num_classes=10, in_channels=3):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        """Logits of a batch ``x`` of 32x32 images."""
        return self.classifier(self.features(x).flatten(1))


def vgg11_bn(num_classes=10, width=64, in_channels=3) -> VGG:
    """VGG-11 with BatchNorm for CIFAR (Donini et al., 2020, Sec. 5): conv widths
    64-M-128-M-256-256-M-512-512-M-512-512-M scaled by ``width / 64``, then a linear layer."""
    cfg = tuple(v if v == "M" else max(1, v * width // 64) for v in VGG11_CFG)
    return VGG(cfg, num_classes, in_channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers and a (1x1 conv-BN when needed) shortcut."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), BatchNorm2d(c_out)
            )

    def forward(self, x):
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem conv (no max-pool), stages of ``BasicBlock`` with widths
    ``width * (1, 2, 4, 8)`` and strides 1, 2, 2, 2, global average pooling, linear layer."""

    def __init__(self, blocks=(2, 2, 2, 2), num_classes=100, width=64, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        layers, c = [], width
        for stage, n in enumerate(blocks):
            for j in range(n):
                stride = 2 if stage > 0 and j == 0 else 1
                layers.append(BasicBlock(c, width * 2**stage, stride))
                c = width * 2**stage
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        """Logits of a batch ``x`` of 32x32 images."""
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes=100, width=64, in_channels=3) -> ResNet:
    """CIFAR ResNet-18 (Donini et al., 2020, Sec. 5: CIFAR-100), BasicBlocks [2, 2, 2, 2]."""
    return ResNet((2, 2, 2, 2), num_classes, width, in_channels)


# ------------------------------------------------------------------------- functional helpers


def functional(module: nn.Module) -> tuple[dict, dict]:
    """Detached copies ``(params, buffers)`` of ``module``'s named parameters and of all its
    named buffers (BatchNorm's int64 ``num_batches_tracked`` included)."""
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
    return params, buffers


@contextlib.contextmanager
def _mode(module: nn.Module, train: bool | None):
    """Put ``module`` in train/eval mode for the duration, then restore every flag
    (``train=None``: leave the modes as they are)."""
    if train is None:
        yield
        return
    saved = [(m, m.training) for m in module.modules()]
    module.train(train)
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def module_loss(module: nn.Module, criterion=F.cross_entropy, train: bool | None = True):
    """Training loss of ``module`` as a pure function of its parameters, for the dynamics.

    ``train=True`` runs the module in train mode (BatchNorm on batch statistics, updating the
    running ones); ``train=None`` leaves every submodule's mode as the module has it at each
    call, as a plain ``loss = criterion(model(x), y)`` would (:class:`~hypergrad.trainer.ModuleTrainer`).
    ``params`` may hold a subset of the parameters: the others (frozen ones) are the module's own.

    * ``module`` without buffers: returns ``loss(params, batch) -> scalar`` with
      ``batch = (x, y)``, i.e. ``criterion(functional_call(module, params, (x,)), y)``.
    * ``module`` with buffers (BatchNorm): returns
      ``loss(params, batch, buffers) -> (scalar, new_buffers)``. The module runs in train mode
      on clones of ``buffers``, so ``new_buffers`` holds the updated running statistics and
      ``buffers`` is left unchanged; ``new_buffers`` carries no derivative (use ``has_aux=True``
      with ``torch.func.grad``/``vjp``).

    The returned function has an attribute ``has_buffers`` telling which form it is.
    """
    if next(module.buffers(), None) is None:

        def loss(params, batch):
            x, y = batch
            with _mode(module, train):
                return criterion(functional_call(module, params, (x,)), y)

    else:

        def loss(params, batch, buffers):
            x, y = batch
            new_buffers = {k: v.clone() for k, v in buffers.items()}
            with _mode(module, train):
                out = functional_call(module, (params, new_buffers), (x,))
            return criterion(out, y), new_buffers

    loss.has_buffers = next(module.buffers(), None) is not None
    return loss


def module_objective(module, batch, criterion=F.cross_entropy, buffers=None, train=False):
    """``objective(params, buffers=None) -> scalar``: the unregularised loss on the fixed
    ``batch = (x, y)``, e.g. the validation error whose hypergradient is sought.

    Eval mode by default, with BatchNorm running statistics taken from the call's ``buffers``
    (the library passes the trajectory's current ones when the state carries buffers), else
    from this function's ``buffers``, else the module's own; ``train=True`` uses batch
    statistics instead, updating only throwaway copies.
    """
    x, y = batch
    fixed = buffers

    def objective(params, buffers=None):
        buffers = buffers if buffers is not None else fixed
        bufs = buffers if buffers is not None else {}
        if train:
            bufs = {k: v.clone() for k, v in (bufs or dict(module.named_buffers())).items()}
        with _mode(module, train):
            return criterion(functional_call(module, (params, bufs), (x,)), y)

    return objective


def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict | None = None,
             buffers: dict | None = None, criterion=F.cross_entropy, batch_size: int = 1000
             ) -> dict[str, float | None]:
    """``{"loss": mean criterion, "acc": fraction classified as y}`` of ``module`` on ``(x, y)``:
    the library's one evaluator (eval mode, no grad, by chunks of ``batch_size``).

    With ``params`` (and ``buffers``) the module runs with those (``functional_call``), else with
    its own. ``loss`` is ``None`` when it is not finite (a diverged run).
    """
    total, correct = 0.0, 0
    with torch.no_grad(), _mode(module, False):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            out = module(xb) if params is None else functional_call(module, (params, buffers or {}), (xb,))
            total += float(criterion(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    n = max(len(x), 1)
    return {"loss": total / n if math.isfinite(total) else None, "acc": correct / n}


def accuracy(module, params, x, y, buffers=None, batch_size=1000) -> float:
    """Fraction of ``x`` classified as ``y``: :func:`evaluate`'s ``"acc"``."""
    return evaluate(module, x, y, params, buffers, batch_size=batch_size)["acc"]
