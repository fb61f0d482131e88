"""The published solutions of the chapters' exercises, one per exercise, in chapter order.

The chapters do not show them (their hints point the way); ``tests/test_exercises.py`` runs
each against its check. Classes whose ``__init__`` a chapter gives keep it exactly as the
chapter has it: the reader writes ``forward`` only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from resnet_lab.finetune import freeze, replace_head

# ---------------------------------------------------------------------------- chapter 1


def diagnose(shallow, deep) -> str:
    s, d = shallow.final, deep.final
    if d["train_acc"] < s["train_acc"]:
        return "degradation"  # worse on its own training data: an optimisation failure
    if d["test_acc"] < s["test_acc"]:
        return "overfitting"  # fits the training data no worse, generalises worse
    return "fine"


OVERFITTING, DEGRADATION = "test", "train"
GAP_PREDICTION = "grows"

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


# ---------------------------------------------------------------------------- chapter 3


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

# ---------------------------------------------------------------------------- chapter 4


class ArticlePair(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x))) + x


def cifar_params(depth: int) -> int:
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # the stem: a 3x3 conv from 3 channels, its BN
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):  # two 3x3 convs, two BNs; option A adds nothing
            total += c_in * width * 9 + width * width * 9 + 2 * 2 * width
            c_in = width
    return total + 64 * 10 + 10  # the head


AFFINE = {"a", "b", "c"}
TEST_LOOP_PREDICTION = "error"

# ---------------------------------------------------------------------------- chapter 5


def onecycle(step: int, total: int, warm: int) -> float:
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / (total - warm))


_EPS, _K = 0.1, 10
TRUE_CLASS = 1 - _EPS + _EPS / _K
OTHER_CLASS = _EPS / _K
LOWEST_LOSS = -(TRUE_CLASS * math.log(TRUE_CLASS) + (_K - 1) * OTHER_CLASS * math.log(OTHER_CLASS))
LESION_PREDICTION = "shortcut"

# ---------------------------------------------------------------------------- chapter 6


def linear_probe(model, num_classes):
    replace_head(model, num_classes)
    return freeze(model, "backbone")


FROZEN_TRAIN_MODE = {"c"}
ZERO_LR_PREDICTION = "statistics"

# ---------------------------------------------------------------------------- chapter 7


class PreNormBlock(nn.Module):
    """Chapter 7's pre-norm block, as the chapter defines it (the base of the exercise)."""

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


IDENTITY_BLOCKS = {"preact", "pre-norm"}
SCALE_PREDICTION = "pre-norm"
