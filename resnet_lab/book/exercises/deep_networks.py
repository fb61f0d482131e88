"""Chapter 3's exercises: a prediction of plain-110's gradients from plain-56's, the spread of
a residual stream block by block, and features that batch normalisation cannot tell from
healthy ones although they have collapsed."""

from __future__ import annotations

import math
import numbers

import torch

from resnet_lab.blocks import PreActBlock
from resnet_lab.book.analysis import gradient_norms
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    attempt,
    choice,
    judge_outputs,
    judge_prediction,
    passed,
)
from resnet_lab.book.representation import effective_rank
from resnet_lab.models import cifar_resnet

# ---------------------------------------------------------------- plain-110, predicted


def _first_last_ratio(depth: int, skip: bool, images, labels) -> float:
    g = gradient_norms(cifar_resnet(depth, skip=skip), images, labels)
    return g[0] / g[-2]  # the first conv's against the last conv's (g[-1] is the head)


PLAIN110_CHOICES = ("same", "double", "square")
NEAREST = {"same": "ratio itself", "double": "ratio doubled", "square": "ratio squared"}


def measure_plain110(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> Measurement:
    """The first conv's gradient norm over the last conv's in fresh plain-56, plain-110 and
    ResNet-110 on one batch. Plain-110's ratio r is judged against plain-56's r56 on a log
    scale: nearest to r56 ("same"), to 2·r56 ("double") or to r56² ("square"). ``seed``
    initialises the networks (the tests try several); the reader's random state is left as
    it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        r = {
            name: _first_last_ratio(d, skip, images, labels)
            for name, d, skip in (
                ("plain-56", 56, False),
                ("plain-110", 110, False),
                ("ResNet-110", 110, True),
            )
        }
    for name, v in r.items():
        print(f"{name:10s} first conv's gradient / last conv's: {v:.3g}")
    r56, r110 = r["plain-56"], r["plain-110"]
    print(f"plain-56's ratio doubled: {2 * r56:.3g}; squared: {r56**2:.3g}")
    guesses = {"same": r56, "double": 2 * r56, "square": r56**2}
    truth = min(guesses, key=lambda k: abs(math.log(r110 / guesses[k])))
    per_layer = r110 ** (1 / 108)  # 109 convolutions: 108 steps from the last to the first
    return Measurement(
        truth,
        f"plain-110's ratio is {r110:.3g}, nearest to plain-56's {NEAREST[truth]} "
        f"({guesses[truth]:.3g}).",
        f"plain-110's ratio, {r110:.3g}, is near plain-56's squared: twice the layers, each "
        f"multiplying the gradient by about {per_layer:.3g}. ResNet-110's ratio is "
        f"{r['ResNet-110']:.3g}",
    )


def run_plain110(prediction, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Chapter 3, predict then run: how plain-110's first-to-last gradient ratio compares with
    plain-56's."""
    guess = choice(prediction, PLAIN110_CHOICES)
    judge_prediction(guess, measure_plain110(images, labels))


# ---------------------------------------------------------------- the stream's spread

STREAM_CASES = [
    (1.0, [1.0, 1.0, 1.0, 1.0]),
    (0.5, [0.3, 0.4, 1.2]),
    (2.0, [0.0, 0.5]),
    (0.8, [0.4, 0.1, 0.7, 0.2, 0.3, 0.6]),
]


def _stream(x0: float, stds: list[float], add=lambda a, b: math.hypot(a, b)) -> list[float]:
    out, s = [], x0
    for b in stds:
        s = add(s, b)
        out.append(s)
    return out


STREAM_MISTAKES = [
    (
        lambda x0, s: _stream(x0, s, lambda a, b: a + b),
        "stds added",
        "you added the spreads: for terms that are uncorrelated it is the variances that add",
    ),
    (
        lambda x0, s: _stream(0.0, s),
        "no input",
        "the input is missing: the stream keeps x_0, and every branch adds to it",
    ),
    (
        lambda x0, s: [v * v for v in _stream(x0, s)],
        "variances",
        "those are variances: the spread asked is their square root",
    ),
    (
        lambda x0, s: [x0] * len(s),
        "no growth",
        "the spread stays the input's: every branch adds a part that is uncorrelated with "
        "the stream, and so adds spread",
    ),
    (
        lambda x0, s: list(s),
        "plain",
        "each block's output is its branch alone: that is a plain network; here the shortcut "
        "carries the stream on",
    ),
    (
        lambda x0, s: [x0, *_stream(x0, s)[:-1]],
        "one behind",
        "one block behind: entry i is the spread after block i, its branch included",
    ),
]


def _numbers(value, what: str) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (numbers.Real, str)) or not hasattr(value, "__iter__"):
        raise NotYet(f"{what} must return one spread per block, a list, got {value!r}", "type")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise NotYet(f"{what} must return numbers, got {value!r}", "type") from None


def _measured_stack(stream_std, blocks: int = 18) -> tuple[float, float]:
    """A fresh stack of pre-activation blocks, BN in training mode: the measured spread
    after its last block, and what ``stream_std`` says from the measured branch spreads."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        x = torch.randn(64, 16, 8, 8)
        x0, branch = x.std().item(), []
        for _ in range(blocks):
            block = PreActBlock(16, 16)
            twin = PreActBlock(16, 16, skip=False)
            twin.load_state_dict(block.state_dict())
            branch.append(twin(x).std().item())
            x = block(x)
    return x.std().item(), _numbers(stream_std(x0, branch), "stream_std")[-1]


def check_stream_std(stream_std) -> None:
    """Chapter 3, exercise 2: the spread of x_l after each of a stack of pre-activation
    blocks, x_{l+1} = x_l + F(x_l), each branch uncorrelated with the stream."""
    got = [
        _numbers(attempt(stream_std, x0, s, what=f"stream_std({x0}, {s})"), "stream_std")
        for x0, s in STREAM_CASES
    ]
    for g, (x0, s) in zip(got, STREAM_CASES):
        if len(g) != len(s):
            raise NotYet(
                f"stream_std({x0}, {s}) returned {len(g)} spreads for {len(s)} blocks: one "
                "per block, after it",
                "length",
            )
    close = lambda a, b: all(math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-9) for u, v in zip(a, b))  # noqa: E731
    judge_outputs(
        got,
        [_stream(x0, s) for x0, s in STREAM_CASES],
        [([f(x0, s) for x0, s in STREAM_CASES], k, m) for f, k, m in STREAM_MISTAKES],
        same=close,
        case=lambda i: "stream_std({}, {})".format(*STREAM_CASES[i]),
    )
    measured, yours = _measured_stack(stream_std)
    passed(
        f"and on 18 fresh pre-activation blocks, with the branches' spreads measured, your "
        f"law gives {yours:.3f} after the last block; the stream measured: {measured:.3f} "
        "(the branches are nearly, not exactly, uncorrelated with the stream)"
    )


# ---------------------------------------------------------------- collapsed features

COLLAPSE_SHAPES = [(128, 64), (40, 10), (12, 3)]
MAX_RANK = 1.5  # effective rank: essentially one direction


def _judge_standardised(f: torch.Tensor) -> None:
    """Each column: mean 0 and spread 1, the biased or the unbiased spread."""
    mean = f.mean(0)
    biased, unbiased = f.std(0, unbiased=False), f.std(0, unbiased=True)
    spread = torch.where((biased - 1).abs() < (unbiased - 1).abs(), biased, unbiased)
    k = int((spread - 1).abs().argmax())
    if spread[k] < 1e-6:
        raise NotYet(
            f"channel {k} has no spread at all: batch normalisation (γ = 1) gives every "
            "channel spread 1, and the collapse must happen with every channel spread",
            "no spread",
        )
    if (spread[k] - 1).abs() > 1e-2:
        raise NotYet(
            f"channel {k} has spread {spread[k]:.3g}: batch normalisation scales every "
            "channel to spread 1",
            "not scaled",
        )
    k = int(mean.abs().argmax())
    if mean[k].abs() > 1e-3:
        raise NotYet(
            f"channel {k} has mean {mean[k]:.3g}: batch normalisation centres every channel at 0",
            "not centred",
        )


def check_collapsed_features(collapsed_features) -> None:
    """Chapter 3, exercise 3: features of ``n`` images in ``channels`` channels, every
    channel with mean 0 and spread 1 as after batch normalisation, whose effective rank is
    below :data:`MAX_RANK`."""
    ranks = []
    for n, c in COLLAPSE_SHAPES:
        what = f"collapsed_features({n}, {c})"
        f = attempt(collapsed_features, n, c, what=what)
        if not isinstance(f, torch.Tensor):
            raise NotYet(f"{what} must return a tensor, got {type(f).__name__}", "type")
        if tuple(f.shape) != (n, c):
            raise NotYet(
                f"{what} has shape {tuple(f.shape)}: want ({n}, {c}), a row per image and a "
                "column per channel",
                "shape",
            )
        f = f.detach().double()
        if not torch.isfinite(f).all():
            raise NotYet(f"{what} holds inf or nan", "not finite")
        _judge_standardised(f)
        rank = effective_rank(f)
        if rank >= MAX_RANK:
            independent = rank > min(n, c) / 2
            raise NotYet(
                f"the {n} images of {what} spread along {rank:.3g} directions, under "
                f"{MAX_RANK} asked: "
                + (
                    "standardising each channel on its own says nothing of how the channels "
                    "move together"
                    if independent
                    else "the channels still vary in two or more independent ways"
                ),
                "independent channels" if independent else "too many directions",
            )
        ranks.append(rank)
    passed(
        f"every channel has mean 0 and spread 1, yet the images spread along {ranks[0]:.3g} "
        "direction: batch normalisation pins each channel's spread, not the number of "
        "directions, which is how a deep plain network can lose directions with its signal's "
        "spread intact"
    )
