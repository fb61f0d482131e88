"""Chapter 4's exercises: a pre-activation bottleneck from its description, option C's
parameters in ResNet-20 by hand, and a prediction about zero-initialised plain blocks."""

from __future__ import annotations

import functools

import torch
from torch import nn

from resnet_lab.blocks import PreActBlock, zero_init_residual_
from resnet_lab.book.exercises.tools import (
    Measurement,
    Variant,
    build,
    check_block,
    choice,
    judge_number,
    judge_prediction,
    number,
    passed,
    randomize_,
)
from resnet_lab.models import cifar_resnet, count_params


def _preact_bottleneck(m, x, *, relus=(True, True, True), shortcut="x", after=None):
    act = [torch.relu if r else (lambda t: t) for r in relus]
    out = m.conv1(act[0](m.bn1(x)))
    out = m.conv2(act[1](m.bn2(out)))
    out = m.conv3(act[2](m.bn3(out)))
    if shortcut == "x":
        out = out + x
    elif shortcut == "activated":
        out = out + torch.relu(m.bn1(x))
    elif shortcut == "normalised":
        out = out + m.bn1(x)
    return after(out) if after else out


PREACT_VARIANTS: list[Variant] = [
    (
        functools.partial(_preact_bottleneck, after=torch.relu),
        "relu after sum",
        "a ReLU after the sum: a pre-activation block leaves the sum alone",
    ),
    (
        functools.partial(_preact_bottleneck, shortcut=None),
        "no shortcut",
        "no shortcut: add the block's input x to the last convolution's output",
    ),
    (
        functools.partial(_preact_bottleneck, shortcut="activated"),
        "activated shortcut",
        "your shortcut carries relu(bn1(x)); an identity shortcut carries the raw input x",
    ),
    (
        functools.partial(_preact_bottleneck, shortcut="normalised"),
        "normalised shortcut",
        "your shortcut carries bn1(x) (did `x = self.bn1(x)` overwrite the input?): the sum "
        "takes the raw input x",
    ),
] + [
    (
        functools.partial(_preact_bottleneck, relus=tuple(j != i for j in range(3))),
        f"no relu {i + 1}",
        f"the ReLU after bn{i + 1} is missing: BN, ReLU, then the conv",
    )
    for i in range(3)
]


def check_preact_bottleneck(cls) -> None:
    """Chapter 4, exercise 1: a pre-activation bottleneck, BN-ReLU-conv three times, + x."""
    block = build(cls, 64, 16, what="MyPreActBottleneck")
    randomize_(block, torch.Generator().manual_seed(0))
    x = torch.randn(4, 64, 6, 6, generator=torch.Generator().manual_seed(1))
    check_block(
        block,
        x,
        order=["bn1", "conv1", "bn2", "conv2", "bn3", "conv3"],
        reference=_preact_bottleneck,
        variants=PREACT_VARIANTS,
        what="your block",
        explain_order=lambda calls: (
            (
                "your block convolves first: in a pre-activation block BN and ReLU come before "
                "each convolution",
                "post-activation",
            )
            if calls[:1] == ["conv1"]
            else None
        ),
    )
    passed("BN-ReLU-conv three times, and nothing after the sum: x_L = x_l + ΣF holds")


def _option_c_count(*, bn=2, every=True, kernel=1, first_in=True, bias=False) -> int:
    """Parameters that option C's projections add to ResNet-20, by formula; the flags make
    the mistakes."""
    total, previous = 0, 16
    for width in (16, 32, 64):
        for j in range(3):
            c_in = previous if (first_in and j == 0) else width
            if every or c_in != width:
                total += kernel * c_in * width + bn * width + bias * width
        previous = width
    return total


OPTION_C_MISTAKES = [
    ({"bn": 0}, "no bn", "each projection has a BN too: a scale and a shift per channel"),
    (
        {"bn": 4},
        "running stats",
        "BN's running mean and variance are buffers, not "
        "parameters: a BN has 2 parameters per channel",
    ),
    (
        {"every": False},
        "option B",
        "that is option B's count: a projection only where the "
        "shape changes; option C projects in every block",
    ),
    ({"kernel": 9}, "3x3", "a projection is a 1x1 convolution, not a 3x3"),
    (
        {"first_in": False},
        "first block",
        "the first block of stages 2 and 3 projects from "
        "the previous stage's width (16 or 32 channels)",
    ),
    (
        {"bias": True},
        "conv bias",
        "the 1x1 convolutions have no bias: the BN's shift plays its role",
    ),
]


def check_option_c(answer) -> None:
    """Chapter 4, exercise 2: the parameters option C's projections add to ResNet-20."""
    with torch.random.fork_rng(devices=[]):
        option_a = count_params(cifar_resnet(20))
        want = count_params(cifar_resnet(20, shortcut="C")) - option_a
    judge_number(
        number(answer),
        want,
        [(_option_c_count(**flags), key, msg) for flags, key, msg in OPTION_C_MISTAKES]
        + [
            (
                64 * 64 + 2 * 64,
                "one block",
                "that is one block's projection, the last "
                "stage's; ResNet-20 has nine blocks, in three widths",
            )
        ],
        rel=0,
        hint="in each of the nine blocks, a 1x1 convolution from the block's input channels "
        "to its width, and a BN",
    )
    passed(
        f"{want:,} parameters, about {100 * want / option_a:.0f}% more than option A's ResNet-20"
    )


ZERO_INIT_CHOICES = ("input", "zeros", "relu", "other")


def measure_zero_init() -> Measurement:
    """Ten zero-initialised plain pre-activation blocks, stacked, on random input: whether
    they output "zeros", the "input", its "relu", or something "other"."""
    x = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    out = {}
    with torch.random.fork_rng(devices=[]):
        for skip in (False, True):
            stack = nn.Sequential(*[PreActBlock(16, 16, skip=skip) for _ in range(10)])
            for b in stack:
                zero_init_residual_(b)
            with torch.no_grad():
                out[skip] = stack(x)
    y = out[False]
    kinds = {"zeros": torch.zeros_like(y), "input": x, "relu": torch.relu(x)}
    truth = next((k for k, v in kinds.items() if torch.equal(y, v)), "other")
    print(
        f"plain stack: largest |output| {y.abs().max().item():.3g}; residual stack: "
        f"output equals the input: {torch.equal(out[True], x)}"
    )
    return Measurement(
        truth,
        "Without a shortcut a zeroed branch is the whole block.",
        "zero-init makes a residual block the identity and a plain block the zero map",
    )


def run_zero_init_prediction(prediction) -> None:
    """Chapter 4, predict then run: what a stack of ten zero-initialised *plain*
    pre-activation blocks outputs."""
    guess = choice(prediction, ZERO_INIT_CHOICES)
    judge_prediction(guess, measure_zero_init())
