"""The published solutions of the chapters' exercises, one per exercise, in chapter order.

The chapters do not show them (their hints point the way); ``tests/test_exercises.py`` runs
each against its check. Classes whose ``__init__`` a chapter gives keep it exactly as the
chapter has it: the reader writes ``forward`` only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

# ---------------------------------------------------------------------------- chapter 1


def diagnose(shallow, deep) -> str:
    s, d = shallow.final, deep.final
    if d["train_acc"] < s["train_acc"]:
        return "degradation"  # worse on its own training data: an optimisation failure
    if d["test_acc"] < s["test_acc"]:
        return "overfitting"  # fits the training data no worse, generalises worse
    return "fine"


def settled(shallow, deep) -> int:
    columns = (shallow["train_acc"], shallow["test_acc"], deep["train_acc"], deep["test_acc"])
    verdicts = [  # diagnose's rule, at every epoch
        "degradation" if d_train < s_train else "overfitting" if d_test < s_test else "fine"
        for s_train, s_test, d_train, d_test in zip(*columns)
    ]
    epoch = len(verdicts)  # counted from 1: the last epoch
    while epoch > 1 and verdicts[epoch - 2] == verdicts[-1]:  # back while the one before agrees
        epoch -= 1
    return epoch


TEST_GAP_PREDICTION = "smaller"

# ---------------------------------------------------------------------------- chapter 2


def gradient_gain(lam: float, depth: int) -> float:
    """‖∂L/∂x_0‖ / ‖∂L/∂x_L‖ through ``depth`` blocks x -> lam * x + F(x), with F = 0."""
    x0 = torch.randn(8, requires_grad=True, dtype=torch.float64)
    x = x0
    for _ in range(depth):
        x = lam * x + torch.zeros_like(x)  # the branch F outputs zero
    g = torch.randn_like(x)  # any gradient arriving at the output
    (grad,) = torch.autograd.grad(x, x0, grad_outputs=g)
    return (grad.norm() / g.norm()).item()


N_TERMS, N_TWO_BRANCHES = 2**27, math.comb(27, 2)


def two_basic_blocks(J_A, J_B, d_A, d_B):
    """∂x₂/∂x₀ of two basic blocks, A then B: each block's factor is diag(ReLU')(I + J)."""
    eye = torch.eye(len(J_A), dtype=J_A.dtype)
    return torch.diag(d_B) @ (eye + J_B) @ torch.diag(d_A) @ (eye + J_A)


# ------------------------------------------------------------------- chapter 3 (deep networks)

PLAIN110_PREDICTION = "square"


def stream_std(x0_std, branch_stds):
    """The spread of the stream after each block: uncorrelated parts add their variances."""
    out, var = [], x0_std**2
    for s in branch_stds:
        var += s**2
        out.append(math.sqrt(var))
    return out


def collapsed_features(n, channels):
    """Every channel one standardised vector: mean 0, spread 1, effective rank 1."""
    v = torch.randn(n, 1)
    v = (v - v.mean()) / v.std(unbiased=False)
    return v.expand(n, channels)


# ---------------------------------------------------------------------------- chapter 4 (blocks)


class MyPreActBottleneck(nn.Module):
    def __init__(self, in_planes: int, planes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + x


# in every block a 1x1 conv from its input channels to its width, and a BN (scale, shift)
OPTION_C_PARAMS = (
    3 * (16 * 16 + 2 * 16)  # stage 1: three blocks, 16 -> 16
    + (16 * 32 + 2 * 32)
    + 2 * (32 * 32 + 2 * 32)  # stage 2: 16 -> 32, then 32 -> 32
    + (32 * 64 + 2 * 64)
    + 2 * (64 * 64 + 2 * 64)  # stage 3: 32 -> 64, then 64 -> 64
)
ZERO_INIT_PREDICTION = "zeros"

# ---------------------------------------------------------------------------- chapter 5 (network)

LOOP_NUMBER = 100 * 32 * 32 / 128  # 32 x 32 comparisons an image, each matching with p = 1/128
AFFINE = {"a", "b", "e"}


class ArticlePair(nn.Module):
    """conv3 and conv4 of the article's network: 16 -> 32 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        # the article's 1x1 convolution (its section 3)
        self.project = nn.Conv2d(16, 32, kernel_size=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x))) + self.project(x)


class MyBlock(nn.Module):
    """The paper's basic block, with an option-A shortcut:
    (B, in_planes, H, W) -> (B, planes, H / stride, W / stride)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - in_planes

    def shortcut(self, x):  # option A: every stride-th pixel, zeros for the new channels
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return nn.functional.pad(x, (0, 0, 0, 0, half, self.extra - half))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class MyResNet(nn.Module):
    """The paper's CIFAR ResNet of depth 6n + 2, built from MyBlock:
    (B, 3, 32, 32) -> (B, 10)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for j in range(n):
                stride = 2 if stage > 0 and j == 0 else 1
                blocks.append(MyBlock(c_in, width, stride))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))  # (B, 16, 32, 32)
        x = self.blocks(x)  # (B, 64, 8, 8)
        return self.fc(x.mean(dim=(2, 3)))  # (B, 10)


def cifar_params(depth: int) -> int:
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # the stem: a 3x3 conv from 3 channels, its BN
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):  # two 3x3 convs, two BNs; option A adds nothing
            total += c_in * width * 9 + width * width * 9 + 2 * 2 * width
            c_in = width
    return total + 64 * 10 + 10  # the head


# ---------------------------------------------------------------------------- chapter 6


def onecycle_cosine(step: int, total: int, warm: int) -> float:
    if step < warm:
        return (step + 1) / warm  # the trainer's warm-up
    angle = math.pi * (step - warm) / (total - warm)  # 0 at the peak, pi at step total
    return 0.5 * (1 + math.cos(angle))


_EPS, _K = 0.2, 4
TRUE_CLASS = 1 - _EPS + _EPS / _K
OTHER_CLASS = _EPS / _K
# the lowest loss is reached where the prediction is the target: the target's entropy
LOWEST_LOSS = -(TRUE_CLASS * math.log(TRUE_CLASS) + (_K - 1) * OTHER_CLASS * math.log(OTHER_CLASS))
LOGIT_GAP = math.log(TRUE_CLASS / OTHER_CLASS)  # softmax: p_i / p_j = exp(z_i - z_j)


def test_loss_and_accuracy(model: nn.Module, loader) -> tuple[float, float]:
    model.eval()  # BN: the running averages
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, correct / n


# ---------------------------------------------------------------------------- chapter 7


def seeds_needed(diff: float, sd: float) -> int:
    # diff > 2 sqrt(sd^2/n + sd^2/n)  <=>  n > 8 sd^2 / diff^2; and one seed has no spread
    n = math.floor(8 * sd**2 / diff**2) + 1
    return max(2, n)


LESION_PREDICTION = "shortcut"

# ---------------------------------------------------------------------------- chapter 8


def linear_probe(model, num_classes):
    """Freeze everything, swap every BN for one whose statistics are constants (torchvision's
    FrozenBatchNorm2d, as its detection models do), then a fresh, trainable head."""
    model.requires_grad_(False)
    for name, bn in list(model.named_modules()):
        if isinstance(bn, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(bn.num_features, bn.eps)
            frozen.load_state_dict(bn.state_dict())  # weight, bias, running statistics
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, frozen.to(bn.weight.device))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def layerwise_groups(model, lr, factor):
    stages = [n for n, _ in model.named_children() if n.startswith("layer")]
    ladder = ["fc", *reversed(stages)]  # from the head down; the stem is everything else
    rate = {part: lr * factor**i for i, part in enumerate(ladder)}
    stem = lr * factor ** len(ladder)
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        groups.setdefault(rate.get(name.split(".")[0], stem), []).append(p)
    return [{"params": ps, "lr": r} for r, ps in groups.items()]


ZERO_LR_PREDICTION = "statistics"

# ---------------------------------------------------------------------------- chapter 9


class PreNormBlock(nn.Module):
    """Chapter 9's pre-norm block, as the chapter defines it (the base of the exercise)."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def attention(self, h):
        return self.attn(h, h, h, need_weights=False)[0]

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PostNormBlock(PreNormBlock):
    def forward(self, x):
        x = self.norm1(x + self.attention(x))
        x = self.norm2(x + self.mlp(x))
        return x


def kept(x):
    # branch at zero: the block computes relu(0 + x), which is x where x >= 0
    return x >= 0


SCALE_PREDICTION = "pre-norm"
