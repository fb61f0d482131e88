"""Chapter 3's exercises: a pre-activation bottleneck from its description, option C's
parameters by hand, and a prediction about zero-initialised plain blocks."""

from __future__ import annotations

import functools

import torch
from torch import nn

from resnet_lab.blocks import PreActBlock, make_shortcut, zero_init_residual_
from resnet_lab.exercises.tools import (
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
from resnet_lab.models import count_params


def _preact_bottleneck(m, x, *, relus=(True, True, True), shortcut="x", after=None):
    act = [torch.relu if r else (lambda t: t) for r in relus]
    out = m.conv1(act[0](m.bn1(x)))
    out = m.conv2(act[1](m.bn2(out)))
    out = m.conv3(act[2](m.bn3(out)))
    if shortcut == "x":
        out = out + x
    elif shortcut == "activated":
        out = out + torch.relu(m.bn1(x))
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
] + [
    (
        functools.partial(_preact_bottleneck, relus=tuple(j != i for j in range(3))),
        f"no relu {i + 1}",
        f"the ReLU after bn{i + 1} is missing: BN, ReLU, then the conv",
    )
    for i in range(3)
]


def check_preact_bottleneck(cls) -> None:
    """Chapter 3, exercise 1: a pre-activation bottleneck, BN-ReLU-conv three times, + x."""
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


def check_option_c(answer) -> None:
    """Chapter 3, exercise 2: parameters of option C's shortcut in a stride-1, 64-channel block."""
    want = count_params(make_shortcut(64, 64, 1, "C"))
    conv = 64 * 64
    judge_number(
        number(answer),
        want,
        [
            (conv, "no bn", "the projection has a BN too: a scale and a shift per channel"),
            (
                conv + 4 * 64,
                "running stats",
                "BN's running mean and variance are buffers, "
                "not parameters: a BN has 2 parameters per channel",
            ),
            (
                conv + 64 + 2 * 64,
                "conv bias",
                "the 1x1 convolution has no bias: the BN's shift plays its role",
            ),
            (9 * conv + 2 * 64, "3x3", "the projection is a 1x1 convolution, not a 3x3"),
            (
                0,
                "no projection",
                "options A and B add nothing where shapes match; option C projects in every block",
            ),
        ],
        rel=0,
        hint="a 1x1 convolution from 64 to 64 channels, then a BN",
    )
    passed(f"{want:,} parameters in every block, where options A and B have none")


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
    """Chapter 3, predict then run: what a stack of ten zero-initialised *plain*
    pre-activation blocks outputs."""
    guess = choice(prediction, ZERO_INIT_CHOICES)
    judge_prediction(guess, measure_zero_init())
