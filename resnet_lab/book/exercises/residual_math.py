"""Chapter 2's exercises: the λ-shortcut's gradient measured, the terms of the product of
(I + A_i) counted, and a prediction about plain-110's gradients."""

from __future__ import annotations

import math

import torch

from resnet_lab.book.analysis import gradient_norms
from resnet_lab.book.exercises.tools import (
    Measurement,
    attempt,
    choice,
    judge_number,
    judge_outputs,
    judge_prediction,
    number,
    passed,
)
from resnet_lab.models import cifar_resnet

GAIN_CASES = [(0.9, 50), (1.1, 50), (1.0, 30), (0.5, 4), (2.0, 3)]


def check_gradient_gain(gradient_gain) -> None:
    """Chapter 2, exercise 1: the gradient's gain through ``depth`` blocks λx + F(x) with F = 0."""
    got = [
        number(attempt(gradient_gain, lam, d, what=f"gradient_gain({lam}, {d})"), "the gain")
        for lam, d in GAIN_CASES
    ]
    mistakes = [
        (
            [1.0] * len(GAIN_CASES),
            "branch scaled",
            "the gain is 1 whatever λ: λ must scale "
            "the shortcut x, not the branch F (which outputs zero here)",
        ),
        (
            [lam for lam, _ in GAIN_CASES],
            "once",
            "λ is applied once for the whole stack: every block multiplies the gradient by λ",
        ),
        (
            [lam * d for lam, d in GAIN_CASES],
            "sum",
            "your gains add up; a gradient through a stack is a product of the blocks' factors",
        ),
        ([lam ** (d - 1) for lam, d in GAIN_CASES], "one block short", "one block too few"),
        ([lam ** (d + 1) for lam, d in GAIN_CASES], "one block more", "one block too many"),
        (
            [lam**-d for lam, d in GAIN_CASES],
            "inverted",
            "inverted: the gain is the gradient at the input over the gradient at the output",
        ),
        (
            [lam ** (2 * d) for lam, d in GAIN_CASES],
            "squared",
            "squared: compare norms, not squared norms",
        ),
    ]
    judge_outputs(
        got,
        [lam**d for lam, d in GAIN_CASES],
        mistakes,
        same=lambda a, b: math.isclose(a, b, rel_tol=1e-3),
        case=lambda i: "λ = {}, depth {}".format(*GAIN_CASES[i]),
    )
    passed(
        f"the gain is λ^depth: over 50 blocks {0.9**50:.3g} for λ = 0.9 (it vanishes), "
        f"{1.1**50:.3g} for λ = 1.1 (it explodes); only λ = 1 keeps it (He et al. 2016)"
    )


def check_path_count(n_terms, n_two_branches, blocks: int = 27) -> None:
    """Chapter 2, exercise 2: terms in the expansion of the product of (I + A_i) over 27
    blocks, and those through exactly two residual branches."""
    terms, two = number(n_terms, "n_terms"), number(n_two_branches, "n_two_branches")
    L = blocks
    judge_number(
        terms,
        2**L,
        [
            (
                L + 1,
                "one per block",
                "one term per block, plus the direct path: but every "
                "factor contributes I or A_i, independently of the others",
            ),
            (2 * L, "two per block", "the terms multiply: two choices per factor, 27 factors"),
            (2**L - 1, "no direct path", "you left out the term I·I·...·I, the direct path"),
            (L * L, "squared", "not L²: two choices per factor, 27 factors"),
        ],
        rel=0,
        hint="each factor (I + A_i) contributes either I or A_i to a term",
    )
    judge_number(
        two,
        math.comb(L, 2),
        [
            (
                L * (L - 1),
                "ordered",
                "each pair of branches counted twice: A_i A_j and A_j A_i "
                "are one term (the product keeps the blocks' order)",
            ),
            (L * L, "pairs with repeats", "a term holds each block's A at most once"),
            (2 * L, "two per block", "count the pairs of blocks whose A is picked"),
        ],
        rel=0,
        hint="a term through exactly two branches picks A in two factors, I in the others",
    )
    passed(f"{2**L:,} terms, {math.comb(L, 2)} of them through exactly two branches")


def _first_last_ratio(depth: int, skip: bool, images, labels) -> float:
    g = gradient_norms(cifar_resnet(depth, skip=skip), images, labels)
    return g[0] / g[-2]  # the first conv's against the last conv's (g[-1] is the head)


PLAIN110_CHOICES = ("vanish", "explode", "neither")


def measure_plain110(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> Measurement:
    """The first conv's gradient norm over the last conv's in fresh plain-56, plain-110 and
    ResNet-110 on one batch: plain-110's "explode" above 10, "vanish" below 0.1. ``seed``
    initialises the networks (any gives the same verdict: the tests try several); the
    reader's random state is left as it was."""
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
    times = r["plain-110"] / r["plain-56"]
    print(f"plain-110's ratio is {times:.3g} times plain-56's")
    p = r["plain-110"]
    truth = "explode" if p > 10 else "vanish" if p < 0.1 else "neither"
    return Measurement(
        truth,
        f"The first layer's gradient is {p:.3g} times the last conv's.",
        f"they {truth}: {times:.3g} times more than plain-56's, while ResNet-110's "
        f"first-to-last ratio is {r['ResNet-110']:.3g}",
    )


def run_plain110(prediction, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Chapter 2, predict then run: at initialisation, do plain-110's gradients vanish or
    explode towards the input?"""
    guess = choice(prediction, PLAIN110_CHOICES)
    judge_prediction(guess, measure_plain110(images, labels))
