"""Chapter 5's exercises: what the article's test loop prints, which networks are affine, the
article's widening pair made residual, and a CIFAR ResNet's parameters counted by formula.
Exercise 4, a CIFAR ResNet built from the reader's own block, is judged in
:mod:`~resnet_lab.book.exercises.own_resnet`."""

from __future__ import annotations

import functools

import torch
from torch import nn

from resnet_lab.book.exercises.tools import (
    NotAttempted,
    NotYet,
    Variant,
    attempt,
    build,
    check_block,
    choices,
    close,
    judge_number,
    number,
    passed,
    randomize_,
)
from resnet_lab.models import cifar_resnet, count_params

# ---------------------------------------------------------------------------- exercise 1


def _article_loop_number(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """What the article's test loop prints for one batch: its (B, 32, 32) predictions
    compared with the (B,) labels, counted against B images."""
    return 100 * (predicted == target).sum().item() / target.size(0)


LOOP_MISTAKES = [  # 32 images of 32 x 32 pixels, 128 channels, 10 classes
    (100 / 128, "per image", "that is one comparison per image: the loop compares pixels"),
    (100 * 32 / 128, "one axis", "each image's map has 32 x 32 pixels: count them all"),
    (
        100 * 32 * 32 * 32 / 128,
        "per batch",
        "`total` grows by the batch's 32 images, not by 1 a batch",
    ),
    (32 * 32 / 128, "not percent", "the loop prints a percentage: 100 x correct / total"),
    (100 / 10, "ten classes", "the strongest channel is one of 128, not of 10 classes"),
    (100 * 32 * 32 / 10, "ten classes", "the strongest channel is one of 128, not of 10 classes"),
    (
        100 * 32 * 32 * 10 / 128,
        "any label",
        "a comparison matches one label, its image's, not any of the ten",
    ),
]


def check_loop_number(answer) -> None:
    """Chapter 5, exercise 1: the expected number the article's test loop prints when every
    pixel's strongest channel is a uniformly random one of the 128."""
    want = 100 * 32 * 32 / 128  # per image: 32 x 32 comparisons, each a match with p = 1/128
    judge_number(  # within 1%: a simulated estimate passes too
        number(answer),
        want,
        LOOP_MISTAKES,
        rel=0.01,
        hint="count the comparisons one batch makes, the chance that one matches, and what "
        "`total` grows by",
    )
    passed(
        f"400 batches of random predictions print {random_loop_number(400):.0f} on average: "
        "the loop counts pixels and divides by images"
    )


def random_loop_number(batches: int, seed: int = 0) -> float:
    """The article's test loop's printed number, averaged over ``batches`` batches of 32 random
    labels and (32, 32, 32) predictions drawn uniformly from the 128 channels."""
    g = torch.Generator().manual_seed(seed)
    printed = [
        _article_loop_number(
            torch.randint(0, 128, (32, 32, 32), generator=g),
            torch.randint(0, 10, (32,), generator=g),
        )
        for _ in range(batches)
    ]
    return sum(printed) / len(printed)


# ---------------------------------------------------------------------------- exercise 2


def _conv() -> nn.Conv2d:
    return nn.Conv2d(3, 3, 3, padding=1)


class _SkipPair(nn.Module):
    """Two of the article's convolutions with a skip around them: x + conv2(conv1(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv(), _conv()

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


def _with_bn(training: bool) -> nn.Module:
    bn = nn.BatchNorm2d(3)
    randomize_(bn, torch.Generator().manual_seed(2))  # running statistics of its own
    return nn.Sequential(_conv(), bn, _conv()).train(training)


AFFINE_OPTIONS = {
    "a": _SkipPair,
    "b": lambda: _with_bn(training=False),
    "c": lambda: _with_bn(training=True),
    "d": lambda: nn.Sequential(_conv(), nn.MaxPool2d(2), _conv()),
    "e": lambda: nn.Sequential(_conv(), nn.AvgPool2d(2), _conv()),
}


@torch.no_grad()
def _is_affine(net: nn.Module) -> bool:
    net = net.double()
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    lhs, rhs = net(a + b) - net(b), net(a) - net(torch.zeros_like(a))
    return torch.allclose(lhs, rhs, atol=1e-8)  # f(a + b) - f(b) = f(a) - f(0)


def check_affine(answer) -> None:
    """Chapter 5, exercise 2: which of the networks are one affine map of their input. A wrong
    set is told how many letters are misplaced, not which (guessing one at a time would
    converge on the answer otherwise)."""
    picked = choices(answer, tuple(AFFINE_OPTIONS), "answer")
    with torch.random.fork_rng(devices=[]):
        truth = {k for k, make in AFFINE_OPTIONS.items() if _is_affine(make())}
    wrong = len(picked ^ truth)
    if wrong:
        verb = "is" if wrong == 1 else "are"
        raise NotYet(
            f"{wrong} of the {len(AFFINE_OPTIONS)} letters {verb} misplaced (picked though not "
            "affine, or affine though left out): ask of each operation whether its weights "
            "are fixed or depend on the input",
            f"{wrong} wrong",
        )
    passed("an operation whose weights depend on the input (a max, batch statistics) breaks it")


# ---------------------------------------------------------------------------- exercise 3


def _pair(
    m,
    x,
    *,
    relu=True,
    shortcut=True,
    relu_after=False,
    relu_end=False,
    inside=False,
    relu_in=False,
    from_conv1=False,
    relu_shortcut=False,
):
    """The article's pair (16 -> 32 channels) as its formula has it, F(x) + project(x), or
    with one of the mistakes the flags name."""
    h = m.conv1(torch.relu(x) if relu_in else x)
    skip = h if from_conv1 else m.project(x)
    skip = torch.relu(skip) if relu_shortcut else skip
    h = torch.relu(h) if relu else h
    out = m.conv2(h + skip if inside else h)
    out = torch.relu(out) if relu_end else out
    out = out + skip if shortcut and not inside else out
    return torch.relu(out) if relu_after else out


def _variant(key: str, message: str, **flags) -> Variant:
    return functools.partial(_pair, **flags), key, message


PAIR_VARIANTS: list[Variant] = [
    _variant(
        "not attempted",
        "still the article's line: write the residual block, then run this cell",
        relu=False,
        shortcut=False,
    ),
    _variant("no relu", "nothing non-linear inside F: the block is still affine", relu=False),
    _variant("no shortcut", "nothing is added back: the output is F(x) alone", shortcut=False),
    _variant(
        "relu after sum",
        "a ReLU after the sum: that is the paper's basic block (chapter 4), not the article's "
        "formula",
        relu_after=True,
    ),
    _variant(
        "relu after conv2",
        "a ReLU after the second convolution: the formula has none there",
        relu_end=True,
    ),
    _variant("x inside", "the input is added inside F, before the second convolution", inside=True),
    _variant(
        "relu on input", "a ReLU on the input: the formula applies W1 to x itself", relu_in=True
    ),
    _variant(
        "conv1 shortcut",
        "the shortcut carries conv1's output, not the block's input",
        from_conv1=True,
    ),
    _variant(
        "relu on shortcut",
        "a ReLU on the shortcut: the article adds the 1x1 convolution's output as it is",
        relu_shortcut=True,
    ),
]


def check_article_pair(cls) -> None:
    """Chapter 5, exercise 3: the article's widening pair, F(x) = W2·ReLU(W1·x + b1) + b2, plus
    the input through the 1x1 convolution of the article's section 3."""
    block = build(cls, what="ArticlePair")
    randomize_(block, torch.Generator().manual_seed(0))
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    try:
        check_block(
            block,
            x,
            order=["conv1", "conv2"],  # the 1x1 may run before or after them
            reference=_pair,
            variants=PAIR_VARIANTS,
            what="your ArticlePair",
        )
    except NotAttempted:
        raise
    except NotYet as e:
        if e.mistake == "raised" and "size of tensor" in str(e):
            raise NotYet(
                "your sum adds tensors of 16 and 32 channels: the input must take F(x)'s shape "
                "before it is added",
                "unmatched shortcut",
            ) from None
        if e.mistake == "wrong":
            raise NotYet(
                "your ArticlePair computes something else: compare it, term by term, with the "
                "article's formula",
                "wrong",
            ) from None
        raise
    passed("F(x) + Px with F = W2·ReLU(W1·x + b1) + b2: the article's formula, widened")


# ---------------------------------------------------------------------------- exercise 5


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
    """Chapter 5, exercise 5: ``cifar_params(depth)``, the parameter count, by formula."""
    got = [number(attempt(cifar_params, d, what=f"cifar_params({d})")) for d in CIFAR_DEPTHS]
    want = [_cifar_truth(d) for d in CIFAR_DEPTHS]
    if all(close(g, w) for g, w in zip(got, want)):
        passed(
            f"ResNet-1202: {want[-1]:,} parameters, counted without building it (the paper: 19.4M)"
        )
        return
    for flags, key, message in CIFAR_MISTAKES:
        if all(close(g, _cifar_count(d, **flags)) for g, d in zip(got, CIFAR_DEPTHS)):
            raise NotYet(message, key)
    i = next(i for i, (g, w) in enumerate(zip(got, want)) if not close(g, w))
    side = "too many" if got[i] > want[i] else "too few"
    raise NotYet(
        f"cifar_params({CIFAR_DEPTHS[i]}) counts {side}: list the layers of one block, then "
        "of each stage",
        "wrong",
    )
