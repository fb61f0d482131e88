"""Chapter 4's exercises: the article's pair of convolutions made residual, a CIFAR ResNet's
parameters counted by formula, which networks are affine, and a prediction about the article's
test loop."""

from __future__ import annotations

import functools

import torch
from torch import nn

from resnet_lab.book.article import ArticleNet, ArticleNetFixed
from resnet_lab.blocks import BasicBlock
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    Variant,
    attempt,
    build,
    check_block,
    choice,
    choices,
    judge_prediction,
    number,
    passed,
    randomize_,
)
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet, count_params


def _pair(m, x, *, relu=True, shortcut=True, relu_after=False, relu_end=False, inside=False):
    h = m.conv1(x)
    h = torch.relu(h) if relu else h
    out = m.conv2(h + x if inside else h)
    out = torch.relu(out) if relu_end else out
    out = out + x if shortcut and not inside else out
    return torch.relu(out) if relu_after else out


PAIR_VARIANTS: list[Variant] = [
    (
        functools.partial(_pair, relu=False, shortcut=False),
        "not attempted",
        "still the article's line, with no ReLU between the convolutions and no shortcut: "
        "fix it, then run this cell",
    ),
    (
        functools.partial(_pair, relu=False),
        "no relu",
        "no ReLU between the convolutions: then F, and the whole block, is affine",
    ),
    (
        functools.partial(_pair, shortcut=False),
        "no shortcut",
        "no shortcut: the output is F(x) + x",
    ),
    (
        functools.partial(_pair, relu_after=True),
        "relu after sum",
        "a ReLU after the sum: that is the paper's block (chapter 3), not the article's formula",
    ),
    (
        functools.partial(_pair, relu_end=True),
        "relu after conv2",
        "a ReLU after the second convolution: the formula has none there",
    ),
    (
        functools.partial(_pair, inside=True),
        "x inside",
        "x is added inside F, before the "
        "second convolution: add it to the second convolution's output",
    ),
]


def check_article_pair(cls) -> None:
    """Chapter 4, exercise 1: the article's formula, F(x) = W2·ReLU(W1·x + b1) + b2, plus x."""
    block = build(cls, what="ArticlePair")
    randomize_(block, torch.Generator().manual_seed(0))
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    check_block(
        block,
        x,
        order=["conv1", "conv2"],
        reference=_pair,
        variants=PAIR_VARIANTS,
        what="your ArticlePair",
    )
    passed("F(x) + x with F = W2·ReLU(W1·x + b1) + b2, the article's own formula")


def _cifar_count(
    depth, *, bn=2, fc_bias=True, half_in=True, projection=False, conv_bias=False, stem=True
) -> int:
    """Parameters of a CIFAR ResNet, counted by formula; the flags make the mistakes."""
    n = (depth - 2) // 6
    total = (3 * 16 * 9 + bn * 16 + conv_bias * 16) if stem else 0
    previous = 16
    for w in (16, 32, 64):
        for j in range(n):
            c_in = previous if (half_in and j == 0) else w
            total += c_in * w * 9 + w * w * 9 + 2 * bn * w + 2 * conv_bias * w
            if projection and c_in != w:
                total += c_in * w + bn * w
        previous = w
    return total + 64 * 10 + 10 * fc_bias


CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110, 1202)


@functools.cache
def _cifar_truth(depth: int) -> int:
    with torch.random.fork_rng(devices=[]):
        return count_params(cifar_resnet(depth))


CIFAR_MISTAKES = [
    (
        {"bn": 0},
        "no bn",
        "you left out batch normalisation: a scale and a shift per channel, in every BN",
    ),
    (
        {"bn": 4},
        "running stats",
        "BN's running mean and variance are buffers, not parameters: 2 per channel",
    ),
    ({"fc_bias": False}, "no fc bias", "the linear head has a bias: 10 more"),
    (
        {"half_in": False},
        "first block",
        "the first block of stages 2 and 3 takes the "
        "previous stage's channels (16 or 32) in, not its own width",
    ),
    (
        {"projection": True},
        "projection",
        "option A's shortcut has no parameters: that count is option B's",
    ),
    ({"conv_bias": True}, "conv bias", "the convolutions have no bias (a BN follows)"),
    (
        {"stem": False},
        "no stem",
        "you left out the stem: a 3x3 conv from 3 to 16 channels and its BN",
    ),
]


def check_cifar_params(cifar_params) -> None:
    """Chapter 4, exercise 2: ``cifar_params(depth)``, the parameter count, by formula."""
    got = [number(attempt(cifar_params, d, what=f"cifar_params({d})")) for d in CIFAR_DEPTHS]
    want = [_cifar_truth(d) for d in CIFAR_DEPTHS]
    if got == want:
        passed(
            f"ResNet-1202: {want[-1]:,} parameters, counted without building it (the paper: 19.4M)"
        )
        return
    for flags, key, message in CIFAR_MISTAKES:
        if got == [_cifar_count(d, **flags) for d in CIFAR_DEPTHS]:
            raise NotYet(message, key)
    i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
    raise NotYet(f"depth {CIFAR_DEPTHS[i]}: {got[i]:,} is off by {got[i] - want[i]:+,}", "wrong")


class _SkipPair(nn.Module):
    """Two of the article's convolutions with a skip around them: x + conv2(conv1(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


AFFINE_OPTIONS = {
    "a": lambda: ArticleNet(),
    "b": lambda: _SkipPair(),
    "c": lambda: ArticleNetFixed(nonlinear=False, skip=False),
    "d": lambda: BasicBlock(3, 3),
}


@torch.no_grad()
def _is_affine(net: nn.Module) -> bool:
    net = net.double().eval()
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    lhs, rhs = net(a + b) - net(b), net(a) - net(torch.zeros_like(a))
    return torch.allclose(lhs, rhs, atol=1e-8)  # f(a + b) - f(b) = f(a) - f(0)


def check_affine(answer) -> None:
    """Chapter 4, exercise 3: which of the networks are one affine map of their input."""
    picked = choices(answer, tuple(AFFINE_OPTIONS), "answer")
    with torch.random.fork_rng(devices=[]):
        truth = {k for k, make in AFFINE_OPTIONS.items() if _is_affine(make())}
    reasons = {
        "a": "eight convolutions with nothing between them compose to one affine map",
        "b": "a skip connection adds no non-linearity: x + Wx is still affine",
        "c": "average pooling and a linear head are linear: a head alone keeps it affine",
        "d": "a BasicBlock has ReLUs, so it is not affine, even with BN fixed in eval mode",
    }
    wrong = sorted(picked ^ truth)
    if wrong:
        raise NotYet(f"({wrong[0]}) {reasons[wrong[0]]}", f"option {wrong[0]}")
    passed("only a non-linearity between the layers lets depth add expressive power")


LOOP_CHOICES = ("error", "over 100", "at most 100")


def measure_test_loop(model: nn.Module, data, batch_size: int = 64) -> Measurement:
    """The article's test loop, as written, on ``data``'s test images in batches of
    ``batch_size``: whether it raises an "error" or prints a number "over 100" or "at most
    100"."""
    test_loader = CifarLoader(
        data.test_images, data.test_labels, batch_size, train=False, device="cpu"
    )
    correct = total = 0
    try:
        with torch.no_grad():  # the article's loop, as written
            for images, target in test_loader:
                outputs = model(images)
                _, predicted = torch.max(outputs.data, 1)
                total += target.size(0)
                correct += (predicted == target).sum().item()
    except RuntimeError as e:
        print(f"batch {batch_size}: RuntimeError: {e}")
        truth = "error"
    else:
        print(f"batch {batch_size}: Accuracy: {100 * correct / total:.0f} %")
        truth = "over 100" if 100 * correct / total > 100 else "at most 100"
    return Measurement(
        truth,
        "Its (B, 32, 32) predictions broadcast against the (B,) labels only when B is 32 or 1.",
        "the loop only looked right because its batches held 32 images",
    )


def run_test_loop_prediction(prediction, model: nn.Module, data) -> None:
    """Chapter 4, predict then run: the article's test loop, as written, with test batches of
    64 images instead of 32."""
    guess = choice(prediction, LOOP_CHOICES)
    judge_prediction(guess, measure_test_loop(model, data, 64))
