"""Chapter 1's exercises: telling degradation from overfitting, in code and in words, and a
prediction about the recorded runs."""

from __future__ import annotations

import statistics

from resnet_lab.checkpoints import History
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    attempt,
    choice,
    judge_outputs,
    judge_prediction,
    passed,
)


def _history(train_acc: list[float], test_acc: list[float]) -> History:
    return History(
        epochs=[
            {"epoch": i + 1, "seconds": 1.0, "train_acc": a, "test_acc": b}
            for i, (a, b) in enumerate(zip(train_acc, test_acc))
        ]
    )


# (what the case is, shallow (train, test), deep (train, test)): three epochs each, so that an
# answer reading the first or the best epoch gives itself away
_BASE = ([0.5, 0.7, 0.8], [0.5, 0.7, 0.75])
DIAGNOSE_CASES = [
    ("a deep run worse on both", _BASE, ([0.4, 0.55, 0.6], [0.4, 0.55, 0.58])),
    ("a deep run that overfits", _BASE, ([0.6, 0.9, 0.99], [0.55, 0.72, 0.70])),
    ("a deep run better on both", _BASE, ([0.45, 0.75, 0.85], [0.45, 0.72, 0.78])),
    ("equal training error, worse test error", _BASE, ([0.5, 0.75, 0.8], [0.5, 0.7, 0.7])),
    ("a deep run that peaks, then falls", _BASE, ([0.6, 0.95, 0.7], [0.6, 0.8, 0.65])),
]


def _rule(s_train, s_test, d_train, d_test, *, strict=False, test_first=False, swap=False):
    if swap:  # judges each error by the other's column
        s_train, s_test, d_train, d_test = s_test, s_train, d_test, d_train
    degraded = d_train < s_train
    overfit = (d_train > s_train if strict else d_train >= s_train) and d_test < s_test
    if test_first and d_test < s_test:
        return "overfitting"
    return "degradation" if degraded else "overfitting" if overfit else "fine"


def _diagnose_by(pick, **rule):
    def outputs():
        out = []
        for _, (st, se), (dt, de) in DIAGNOSE_CASES:
            out.append(_rule(pick(st), pick(se), pick(dt), pick(de), **rule))
        return out

    return outputs()


DIAGNOSE_MISTAKES = [
    (
        _diagnose_by(lambda c: c[0]),
        "first epoch",
        "your diagnose reads the first epoch; judge the final one (h.final)",
    ),
    (
        _diagnose_by(max),
        "best epoch",
        "your diagnose reads each run's best epoch; judge the final one (h.final)",
    ),
    (
        _diagnose_by(lambda c: c[-1], test_first=True),
        "test first",
        "a deep run worse on its training data is degraded, whatever its test error: "
        "look at the training error first",
    ),
    (
        _diagnose_by(lambda c: c[-1], strict=True),
        "tie",
        "equal training error with a higher test error is overfitting too: the deep run fits "
        "no worse and generalises worse",
    ),
    (
        _diagnose_by(lambda c: c[-1], swap=True),
        "columns swapped",
        "you judge degradation by the test error: it shows in the training error",
    ),
    (
        _diagnose_by(lambda c: -c[-1]),  # compares accuracies as if they were errors
        "accuracy as error",
        "train_acc is an accuracy: a higher train_acc is a lower training error",
    ),
]


def check_diagnose(diagnose) -> None:
    """Chapter 1, exercise 1: ``diagnose(shallow, deep)`` tells degradation from overfitting."""
    got, want = [], []
    for _, (s_train, s_test), (d_train, d_test) in DIAGNOSE_CASES:
        shallow, deep = _history(s_train, s_test), _history(d_train, d_test)
        answer = attempt(diagnose, shallow, deep, what="diagnose(shallow, deep)")
        got.append(answer.strip().lower() if isinstance(answer, str) else answer)
        want.append(_rule(s_train[-1], s_test[-1], d_train[-1], d_test[-1]))
    judge_outputs(
        got,
        want,
        DIAGNOSE_MISTAKES,
        same=lambda a, b: a == b,
        case=lambda i: DIAGNOSE_CASES[i][0],
    )
    passed(f"{len(got)} pairs of three-epoch runs diagnosed from their final epochs")


def check_error_signs(overfitting, degradation) -> None:
    """Chapter 1, exercise 2: which error is higher in the deeper network, for each."""
    o = choice(overfitting, ("train", "test"), "overfitting")
    d = choice(degradation, ("train", "test"), "degradation")
    if (o, d) == ("train", "test"):
        raise NotYet("swapped: an overfitting network fits its training data *better*", "swapped")
    if o == d:
        raise NotYet(f"both are {o!r}: the two problems show in different errors", "same error")
    passed("overfitting shows in the test error, degradation in the training error")


GAP_CHOICES = ("grows", "shrinks", "stays")


def measure_gap(records: dict[str, list[History]]) -> Measurement:
    """How plain-56's training error minus plain-20's, mean over seeds, moves from the first
    recorded epoch to the last: "grows" or "shrinks" by more than 5 points, else "stays"."""
    if not records.get("plain20") or not records.get("plain56"):
        raise NotYet("the recorded plain20 and plain56 runs are needed here", "no records")
    curves = [
        [a - b for a, b in zip(s["train_acc"], d["train_acc"])]
        for s, d in zip(records["plain20"], records["plain56"])
    ]
    gap = [100 * statistics.fmean(col) for col in zip(*curves)]  # points of error, per epoch
    epochs = sorted({0, len(gap) // 2, len(gap) - 1})
    print(
        "plain-56 minus plain-20, training error (points), mean over seeds: "
        + ", ".join(f"epoch {e + 1}: {gap[e]:+.1f}" for e in epochs)
    )
    change = gap[-1] - gap[0]
    truth = "grows" if change > 5 else "shrinks" if change < -5 else "stays"
    return Measurement(
        truth,
        f"The gap moved by {change:+.1f} points from the first epoch to the last.",
        f"the gap {truth}, by {change:+.1f} points"
        + (": training longer does not close it" if truth == "grows" else ""),
    )


def run_gap_prediction(prediction, records: dict[str, list[History]]) -> None:
    """Chapter 1, predict then run: does plain-56's gap in training error to plain-20 grow,
    shrink or stay over the epochs of the recorded runs?"""
    guess = choice(prediction, GAP_CHOICES)
    judge_prediction(guess, measure_gap(records))
