"""Chapter 6's exercises: a one-cycle schedule that falls along a cosine, the target of label
smoothing with the lowest loss and the logit gap it allows, and a test loop that returns the test
loss and accuracy. Chapter 7's are in :mod:`resnet_lab.book.exercises.trained_network`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from resnet_lab.book.exercises.tools import (
    NotYet,
    attempt,
    judge_number,
    judge_outputs,
    number,
    passed,
)
from resnet_lab.config import TrainConfig, lr_factor

# (total steps, warm-up steps) the check tries, every step of each
ONECYCLE_CASES = [(1000, 200), (100, 10), (30, 1), (12, 5)]


def _onecycle_steps(fn) -> list[float]:
    return [fn(s, total, warm) for total, warm in ONECYCLE_CASES for s in range(total + 1)]


def _trainer_warmup(step: int, total: int, warm: int) -> float:
    """The trainer's one-cycle multiplier (its warm-up, then its linear fall)."""
    cfg = TrainConfig(schedule="onecycle", warmup=1.0)  # one epoch of `warm` steps
    return lr_factor(cfg, step, total_steps=total, steps_per_epoch=warm)


def _cosine(step: int, total: int, warm: int, *, up=None, period: float = 1.0) -> float:
    """The warm-up ``up`` (default the trainer's), then a cosine fall over ``period`` half
    periods from step ``warm`` to step ``total``."""
    if step < warm:
        return (step + 1) / warm if up is None else up(step, warm)
    angle = period * math.pi * (step - warm) / (total - warm)
    return 0.5 * (1 + math.cos(angle))


COSINE_MISTAKES = [
    (_trainer_warmup, "linear", "your fall is a straight line: the exercise asks for a cosine"),
    (
        lambda s, t, w: _cosine(s, t, w, up=lambda s, w: s / w),
        "from zero",
        "your warm-up starts at 0: the trainer's step 0 already takes 1/warm of the peak (the "
        "one-cycle box), so the rate reaches 1 at step warm - 1",
    ),
    (
        lambda s, t, w: _cosine(s, t, w, up=lambda s, w: 1.0),
        "no warm-up",
        "no warm-up: the first warm steps climb linearly to the peak, as the trainer's do",
    ),
    (
        lambda s, t, w: math.cos(math.pi * (s - w) / (t - w)) if s >= w else (s + 1) / w,
        "cos unshifted",
        "cos runs from 1 down to -1 over half a period: move its values into [0, 1]",
    ),
    (
        lambda s, t, w: _cosine(s, t, w, period=2.0),
        "full period",
        "your cosine turns back up: half a period takes it from its top to its bottom once",
    ),
    (
        lambda s, t, w: 0.5 * (1 + math.cos(math.pi * s / t)) if s >= w else (s + 1) / w,
        "angle from step 0",
        "the fall starts at step warm: count its angle from there, over total - warm steps",
    ),
]


def check_onecycle_cosine(onecycle_cosine) -> None:
    """Chapter 6, exercise 1: the trainer's warm-up, then a cosine fall from 1 at step ``warm``
    to 0 at step ``total``."""
    steps = [(s, total, warm) for total, warm in ONECYCLE_CASES for s in range(total + 1)]
    got = [
        number(attempt(onecycle_cosine, *a, what=f"onecycle_cosine{a}"), "the multiplier")
        for a in steps
    ]
    judge_outputs(
        got,
        _onecycle_steps(_cosine),
        [(_onecycle_steps(fn), key, msg) for fn, key, msg in COSINE_MISTAKES],
        same=lambda a, b: abs(a - b) < 1e-9,
        case=lambda i: "step {}, total {}, warm {}".format(*steps[i]),
    )
    passed(
        f"all {len(steps)} steps of {len(ONECYCLE_CASES)} schedules: "
        "0.5 halfway down, flat at both ends"
    )


# ---------------------------------------------------------------------------- label smoothing


def _smoothed_target(eps: float, k: int) -> torch.Tensor:
    """The target PyTorch's label smoothing trains towards, read from the loss's gradient."""
    logits = torch.zeros(1, k, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(logits, torch.tensor([0]), label_smoothing=eps)
    (grad,) = torch.autograd.grad(loss, logits)
    return (torch.softmax(logits.detach(), 1) - grad)[0]  # the gradient is softmax - target


def _true_and_other(eps: float, k: int):
    t, o = eps / (k - 1), eps
    return [
        (1 - eps, "true class no share", "the true class gets its share of ε too: 1 - ε + ε/K"),
        (o, "swapped", "that is ε itself: the true class keeps most of the weight"),
        (1.0, "no smoothing", "that is the target without smoothing"),
    ], [
        (
            t,
            "others only",
            "ε is spread over all K classes, the true one included, not over the K - 1 others",
        ),
        (o, "eps each", "each class gets ε/K, not ε"),
        (0.0, "other zero", "with smoothing no class gets a target of 0"),
    ]


def _smoothing_judgements(eps: float, k: int) -> list[tuple[str, float, list, str]]:
    """(answer's name, the right value, its mistakes, a hint) for each of the four answers."""
    target = _smoothed_target(eps, k)
    t, o = target[0].item(), target[1].item()
    entropy = -(target * target.log()).sum().item()
    true_mistakes, other_mistakes = _true_and_other(eps, k)
    loss_mistakes = [
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
    ]
    gap_mistakes = [
        (
            t - o,
            "probability gap",
            "that is a difference of probabilities; softmax turns a "
            "difference of logits into a ratio of probabilities",
        ),
        (t / o, "ratio", "that is the ratio of the probabilities: the logits differ by its log"),
        (
            math.log((1 - eps) / o),
            "gap without share",
            "the true class's target includes its share of ε",
        ),
    ]
    return [
        ("true_class", t, true_mistakes, "the true class keeps 1 - ε, and gets its share of ε"),
        ("other_class", o, other_mistakes, "ε is spread evenly over the K classes"),
        (
            "lowest_loss",
            entropy,
            loss_mistakes,
            "the cross-entropy is lowest when the "
            "prediction equals the target; then it is the target's entropy",
        ),
        (
            "logit_gap",
            math.log(t / o),
            gap_mistakes,
            "at the lowest loss the prediction is the "
            "target: how do two logits relate to their two probabilities?",
        ),
    ]


def check_label_smoothing(true_class, other_class, lowest_loss, logit_gap, eps=0.2, k=4) -> None:
    """Chapter 6, exercise 2: the smoothed target of one image, the lowest loss it allows, and
    how far the true class's logit sits above the others' at that loss."""
    answers = {
        "true_class": true_class,
        "other_class": other_class,
        "lowest_loss": lowest_loss,
        "logit_gap": logit_gap,
    }
    got = {name: number(v, name) for name, v in answers.items()}
    right = []
    for name, want, mistakes, hint in _smoothing_judgements(eps, k):
        judge_number(got[name], want, mistakes, rel=1e-3, hint=hint)
        right.append(want)
    passed(
        f"the loss cannot go below {right[2]:.3f} nats, and there the logits stop growing: "
        "smoothing keeps them finite"
    )


# ---------------------------------------------------------------------------- the test loop


def _test_setup() -> tuple[nn.Module, DataLoader]:
    """A small classifier with batch normalisation, in training mode with running statistics
    of its own, and a loader of 37 images in batches of 16 (the last one of 5)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )
        model[1].running_mean.normal_(0, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        x = torch.randn(37, 3, 8, 8) * 2 + 0.5
        y = torch.randint(0, 4, (37,))
    return model.train(), DataLoader(TensorDataset(x, y), batch_size=16)


def _reference(model: nn.Module, loader: DataLoader, *, train=False, by_batch=False):
    """(mean loss, accuracy) of ``model`` in eval (or train) mode, per image (or per batch)."""
    model.train(train)
    losses, hits, sizes = [], [], []
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            hits.append((logits.argmax(1) == y).sum().item())
            sizes.append(len(y))
    n = sum(sizes)
    if by_batch:
        loss = sum(a / b for a, b in zip(losses, sizes)) / len(sizes)
        return loss, sum(h / b for h, b in zip(hits, sizes)) / len(sizes)
    return sum(losses) / n, sum(hits) / n


def _run_reader(fn, model, loader) -> tuple[float, float, bool]:
    """The reader's (loss, accuracy), and whether any forward pass recorded a graph."""
    recorded = []
    hook = model.register_forward_hook(lambda *_: recorded.append(torch.is_grad_enabled()))
    try:
        out = attempt(fn, model, loader, what="test_loss_and_accuracy")
    finally:
        hook.remove()
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise NotYet("return two numbers, (mean loss, accuracy)", "not a pair")
    return number(out[0], "the loss"), number(out[1], "the accuracy"), any(recorded)


def check_test_loss(test_loss_and_accuracy) -> None:
    """Chapter 6, exercise 3: the mean test loss per image and the accuracy, in eval mode,
    without a graph, every image counted once."""
    model, loader = _test_setup()
    before = model[1].running_mean.clone()
    loss, acc, graph = _run_reader(test_loss_and_accuracy, model, loader)
    if not torch.equal(before, model[1].running_mean):
        raise NotYet(
            "the BN layer's running averages moved: your test ran the network in training mode",
            "train mode",
        )
    want_loss, want_acc = _reference(model, loader)
    batch_loss, batch_acc = _reference(model, loader, by_batch=True)
    judge_number(
        loss,
        want_loss,
        [
            (
                batch_loss,
                "mean of batches",
                "a mean of the batches' means counts the small last "
                "batch as much as a full one: every image should count once",
            ),
            (
                want_loss * len(loader.dataset),
                "sum",
                "that is the sum of the losses, not the mean per image",
            ),
        ],
        rel=1e-4,
        hint="the mean cross-entropy per test image",
    )
    judge_number(
        acc,
        want_acc,
        [
            (
                batch_acc,
                "mean of batches",
                "a mean of the batches' accuracies counts the small last "
                "batch as much as a full one",
            ),
            (
                want_acc * len(loader.dataset),
                "count",
                "that is the number of right answers: the accuracy is a fraction",
            ),
            (100 * want_acc, "percent", "that is a percentage: the accuracy is a fraction"),
        ],
        rel=1e-4,
        hint="the fraction of test images whose largest logit is the true class",
    )
    if graph:
        raise NotYet(
            "right numbers, but every forward pass recorded a graph for autograd: "
            "testing needs no gradients",
            "graph",
        )
    passed("every image counted once, in eval mode, with no graph")
