"""Chapter 7's exercises: how many seeds a comparison needs, and a prediction about removing a
trained block's shortcut instead of its branch."""

from __future__ import annotations

import math
import statistics

from torch import nn

from resnet_lab.book.analysis import lesion_curve
from resnet_lab.book.exercises.tools import (
    Measurement,
    attempt,
    choice,
    judge_outputs,
    judge_prediction,
    number,
    passed,
)
from resnet_lab.evaluation import evaluate
from resnet_lab.lab.results import standard_error

# (difference of the means, each recipe's spread over seeds): no case sits on a boundary
SEEDS_CASES = [(0.01, 0.006), (0.005, 0.004), (0.02, 0.003), (0.003, 0.005), (0.006, 0.005)]


def _smallest(passes, start: int = 1) -> int:
    n = start
    while not passes(n):
        n += 1
    return n


def _seeds(diff: float, sd: float, *, k: float = 2.0, sides: int = 2, start: int = 2) -> int:
    """The fewest seeds a side for which ``diff`` lies beyond ``k`` standard errors (with
    ``sides`` recipes contributing their spread), from ``start`` seeds up."""
    return _smallest(lambda n: diff > k * math.sqrt(sides * sd**2 / n), start)


def _right_seeds(diff: float, sd: float) -> int:
    return _smallest(lambda n: diff > 2 * standard_error(sd, n, sd, n), 2)  # NaN at n = 1


SEEDS_MISTAKES = [
    (
        lambda d, s: _seeds(d, s, start=1),
        "one seed",
        "one run a side has no spread to measure, so no standard error: a verdict needs two",
    ),
    (
        lambda d, s: _seeds(d, s, sides=1),
        "one side",
        "both means are uncertain: the variances of both sides add",
    ),
    (
        lambda d, s: _seeds(d, s, k=1.0),
        "one SE",
        "the rule asks for a difference beyond two standard errors, not one",
    ),
    (
        lambda d, s: _smallest(lambda n: d > 2 * math.sqrt(2) * s / n, 2),
        "no square root",
        "the standard error of a mean is s/√n: it shrinks with the square root of the seeds",
    ),
    (
        lambda d, s: max(2, math.floor(8 * s**2 / d**2)),
        "rounded down",
        "rounded down: with that many seeds the difference is still within two standard errors",
    ),
]


def check_seeds_needed(seeds_needed) -> None:
    """Chapter 7, exercise 1: the fewest seeds a side for a true difference ``diff`` between two
    recipes of spread ``sd`` to lie beyond twice its standard error."""
    got = [
        number(attempt(seeds_needed, d, s, what=f"seeds_needed({d}, {s})"), "the seeds")
        for d, s in SEEDS_CASES
    ]
    want = [_right_seeds(d, s) for d, s in SEEDS_CASES]
    judge_outputs(
        got,
        want,
        [([fn(d, s) for d, s in SEEDS_CASES], key, msg) for fn, key, msg in SEEDS_MISTAKES],
        same=lambda a, b: a == b,
        case=lambda i: "diff {}, sd {}".format(*SEEDS_CASES[i]),
    )
    d, s = SEEDS_CASES[3]
    passed(
        f"halve a difference and it takes four times the seeds: {_right_seeds(d, s)} a "
        f"side for {100 * d:.1f} points at a spread of {100 * s:.1f}"
    )


# ---------------------------------------------------------------------------- the lesion


def _shortcut_lesion_curve(net: nn.Module, loader) -> list[float]:
    """Test accuracy with block i's shortcut removed (its branch F kept), for every block."""
    out = []
    for block in net.blocks():
        block.skip = False  # the block's plain twin: its output is relu(F(x))
        try:
            out.append(evaluate(net, loader)[1])
        finally:
            block.skip = True
    return out


LESION_CHOICES = ("branch", "shortcut", "same")


def measure_shortcut_lesion(net: nn.Module, loader) -> Measurement:
    """Mean test accuracy of a trained residual ``net`` with one block's branch removed
    (Veit et al.), and with one block's shortcut removed, over its blocks: which removal
    costs more than 3 points more ("branch" or "shortcut"), or the "same"."""
    if not all(getattr(b, "skip", False) for b in net.blocks()):
        raise ValueError("the shortcut lesion needs a residual network (every block skip=True)")
    intact = evaluate(net, loader)[1]
    branch, shortcut = lesion_curve(net, loader), _shortcut_lesion_curve(net, loader)
    for i, (b, s) in enumerate(zip(branch, shortcut)):
        print(f"block {i}: branch removed {100 * b:5.1f}%, shortcut removed {100 * s:5.1f}%")
    mb, ms = statistics.fmean(branch), statistics.fmean(shortcut)
    print(
        f"intact {100 * intact:.1f}%; mean: branch removed {100 * mb:.1f}%, "
        f"shortcut removed {100 * ms:.1f}%"
    )
    truth = "shortcut" if mb - ms > 0.03 else "branch" if ms - mb > 0.03 else "same"
    return Measurement(
        truth,
        f"Mean accuracy {100 * mb:.1f}% without a branch, {100 * ms:.1f}% without a shortcut.",
        "the blocks after a removed shortcut lose the stream x they were trained on"
        if truth == "shortcut"
        else f"removing the {truth} costs more here"
        if truth != "same"
        else "the same",
    )


def run_shortcut_lesion(prediction, net: nn.Module, loader) -> None:
    """Chapter 7, predict then run: which hurts a trained ResNet more, removing one block's
    residual branch (Veit et al.) or removing its shortcut?"""
    guess = choice(prediction, LESION_CHOICES)
    judge_prediction(guess, measure_shortcut_lesion(net, loader))
