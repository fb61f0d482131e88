"""Chapter 5's exercises: the trainer's one-cycle schedule, the target of label smoothing and
the lowest loss it allows, and a prediction about removing a trained block's shortcut."""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book.analysis import lesion_curve
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
from resnet_lab.config import TrainConfig, lr_factor
from resnet_lab.evaluation import evaluate

# (total steps, warm-up steps) the check tries, every step of each
ONECYCLE_CASES = [(1000, 200), (100, 10), (30, 1), (12, 5)]


def _onecycle_steps(fn) -> list[float]:
    return [fn(s, total, warm) for total, warm in ONECYCLE_CASES for s in range(total + 1)]


def _trainer_onecycle(step: int, total: int, warm: int) -> float:
    cfg = TrainConfig(schedule="onecycle", warmup=1.0)  # one epoch of `warm` steps
    return lr_factor(cfg, step, total_steps=total, steps_per_epoch=warm)


def _fall(step, total, warm):
    return max(0.0, (total - step) / (total - warm))


ONECYCLE_MISTAKES = [
    (
        lambda s, t, w: s / w if s < w else _fall(s, t, w),
        "from zero",
        "your warm-up starts at 0: the trainer's step 0 already takes 1/warm of the peak (it "
        "counts the step being taken), so the rate reaches 1 at step warm - 1",
    ),
    (
        lambda s, t, w: 1.0 if s < w else _fall(s, t, w),
        "no warm-up",
        "no warm-up: the first warm steps climb linearly to the peak",
    ),
    (
        lambda s, t, w: (s + 1) / w if s < w else (t - s) / t,
        "falls over total",
        "the fall starts at the peak: from 1 at step warm to 0 at step total",
    ),
    (
        lambda s, t, w: (s + 1) / w if s < w else max(0.0, (t - 1 - s) / (t - 1 - w)),
        "ends early",
        "your rate reaches 0 one step early: at step total, not total - 1",
    ),
    (
        lambda s, t, w: (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (t - w))),
        "cosine",
        "the trainer's fall is linear, not a cosine",
    ),
]


def check_onecycle(onecycle) -> None:
    """Chapter 5, exercise 1: ``onecycle(step, total, warm)`` is the trainer's schedule."""
    steps = [(s, total, warm) for total, warm in ONECYCLE_CASES for s in range(total + 1)]
    got = [number(attempt(onecycle, *a, what=f"onecycle{a}"), "the multiplier") for a in steps]
    judge_outputs(
        got,
        _onecycle_steps(_trainer_onecycle),
        [(_onecycle_steps(fn), key, msg) for fn, key, msg in ONECYCLE_MISTAKES],
        same=lambda a, b: abs(a - b) < 1e-9,
        case=lambda i: "step {}, total {}, warm {}".format(*steps[i]),
    )
    passed(f"the trainer's lr_factor at all {len(steps)} steps of {len(ONECYCLE_CASES)} schedules")


def _smoothed_target(eps: float, k: int) -> torch.Tensor:
    """The target PyTorch's label smoothing trains towards, read from the loss's gradient."""
    logits = torch.zeros(1, k, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(logits, torch.tensor([0]), label_smoothing=eps)
    (grad,) = torch.autograd.grad(loss, logits)
    return (torch.softmax(logits.detach(), 1) - grad)[0]  # the gradient is softmax - target


def _smoothing_judgements(eps: float, k: int) -> list[tuple[str, float, list, str]]:
    """(answer's name, the right value, its mistakes, a hint) for each of the three answers."""
    target = _smoothed_target(eps, k)
    t, o = target[0].item(), target[1].item()
    entropy = -(target * target.log()).sum().item()
    return [
        (
            "true_class",
            t,
            [
                (
                    1 - eps,
                    "true class no share",
                    "the true class gets its share of ε too: 1 - ε + ε/K",
                ),
                (eps, "swapped", "that is ε itself: the true class keeps most of the weight"),
                (1.0, "no smoothing", "that is the target without smoothing"),
            ],
            "the true class keeps 1 - ε, and gets its share of ε",
        ),
        (
            "other_class",
            o,
            [
                (
                    eps / (k - 1),
                    "others only",
                    "ε is spread over all K classes, the true one "
                    "included, not over the K - 1 others",
                ),
                (eps, "eps each", "each class gets ε/K, not ε"),
                (0.0, "other zero", "with smoothing no class gets a target of 0"),
            ],
            "ε is spread evenly over the K classes",
        ),
        (
            "lowest_loss",
            entropy,
            [
                (
                    0.0,
                    "zero",
                    "the loss cannot reach 0: the target is no longer one-hot, so the "
                    "cross-entropy is at least the target's entropy",
                ),
                (
                    -math.log(t),
                    "true class term only",
                    "only the true class's term: the other classes' targets add to the loss too",
                ),
                (math.log(k), "uniform", "ln K is the loss of a uniform guess, not the lowest"),
            ],
            "the cross-entropy is lowest when the prediction equals the target; then it is "
            "the target's entropy",
        ),
    ]


def check_label_smoothing(true_class, other_class, lowest_loss, eps=0.1, k=10) -> None:
    """Chapter 5, exercise 2: the smoothed target of one image, and the lowest loss it allows."""
    answers = {"true_class": true_class, "other_class": other_class, "lowest_loss": lowest_loss}
    got = {name: number(v, name) for name, v in answers.items()}
    right = []
    for name, want, mistakes, hint in _smoothing_judgements(eps, k):
        judge_number(got[name], want, mistakes, rel=1e-3, hint=hint)
        right.append(want)
    passed(f"targets {right[0]:.2f} and {right[1]:.2f}; the loss cannot go below {right[2]:.3f}")


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
    """Chapter 5, predict then run: which hurts a trained ResNet more, removing one block's
    residual branch (Veit et al.) or removing its shortcut?"""
    guess = choice(prediction, LESION_CHOICES)
    judge_prediction(guess, measure_shortcut_lesion(net, loader))
