"""Chapter 1's exercises: telling degradation from overfitting, in code, at the end of training
and epoch by epoch, and a prediction about the recorded runs' test errors."""

from __future__ import annotations

import numbers
import statistics

from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    attempt,
    choice,
    judge_outputs,
    judge_prediction,
    passed,
)
from resnet_lab.checkpoints import History


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


def _rule(
    s_train,
    s_test,
    d_train,
    d_test,
    *,
    strict=False,
    test_first=False,
    swap=False,
    overfitting=True,
):
    if swap:  # judges each error by the other's column
        s_train, s_test, d_train, d_test = s_test, s_train, d_test, d_train
    degraded = d_train < s_train
    fits = d_train > s_train if strict else d_train >= s_train
    overfit = overfitting and fits and d_test < s_test
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


def _settled(verdicts: list[str]) -> int:
    """The first epoch (from 1) from which ``verdicts`` stay as the last one is."""
    changed = [i for i, v in enumerate(verdicts) if v != verdicts[-1]]
    return changed[-1] + 2 if changed else 1


# (what the case is, shallow (train, test), deep (train, test)): five epochs each, curves that
# cross in different ways, so that each slip below gives itself away on some case
_SHALLOW = ([0.40, 0.55, 0.65, 0.72, 0.78], [0.40, 0.52, 0.60, 0.66, 0.70])
SETTLED_CASES = [
    (
        "a deep run that starts slowly, then overtakes",
        _SHALLOW,
        ([0.30, 0.45, 0.62, 0.75, 0.82], [0.30, 0.44, 0.58, 0.67, 0.73]),
    ),
    (
        "a deep run that looks fine halfway, then overfits",
        _SHALLOW,
        ([0.42, 0.60, 0.72, 0.82, 0.90], [0.41, 0.55, 0.61, 0.64, 0.66]),
    ),
    (
        "a verdict that leaves and comes back",
        _SHALLOW,
        ([0.35, 0.58, 0.60, 0.70, 0.74], [0.35, 0.54, 0.57, 0.64, 0.69]),
    ),
    (
        "a deep run behind in training from first to last",
        _SHALLOW,
        ([0.30, 0.42, 0.55, 0.64, 0.70], [0.30, 0.42, 0.55, 0.67, 0.72]),
    ),
    (
        "a verdict that changes at the last epoch",
        _SHALLOW,
        ([0.45, 0.60, 0.70, 0.76, 0.77], [0.44, 0.58, 0.64, 0.68, 0.69]),
    ),
    (
        "equal training errors on some epochs",
        _SHALLOW,
        ([0.40, 0.50, 0.66, 0.72, 0.78], [0.42, 0.50, 0.62, 0.68, 0.69]),
    ),
]


def _settled_by(answer=_settled, **rule) -> list:
    """What a ``settled`` that judges each epoch by ``_rule(**rule)`` and turns the verdicts
    into an answer by ``answer`` returns on every case."""
    out = []
    for _, (st, se), (dt, de) in SETTLED_CASES:
        verdicts = [_rule(*epoch, **rule) for epoch in zip(st, se, dt, de)]
        out.append(answer(verdicts))
    return out


SETTLED_MISTAKES = [
    (
        _settled_by(lambda v: v.index(v[-1]) + 1),
        "first match",
        "you return the first epoch whose verdict is the final one; a verdict can leave and "
        "come back: it has settled only where no later epoch gives another",
    ),
    (
        _settled_by(lambda v: _settled(v) - 1),
        "one early",
        "one epoch early: epochs count from 1 (h['epoch']), and the answer is the first epoch "
        "that already has the final verdict",
    ),
    (
        _settled_by(lambda v: len(v) - _settled(v) + 1),
        "stretch",
        "that is how many epochs the final verdict lasted; return the epoch where it began",
    ),
    (
        _settled_by(overfitting=False),
        "no overfitting",
        "your verdicts never say overfitting: a deep run that fits no worse and tests worse "
        "is overfitting, at any epoch",
    ),
    (
        _settled_by(strict=True),
        "tie",
        "equal training errors with a worse test error are overfitting too, as in exercise 1",
    ),
    (
        _settled_by(swap=True),
        "columns swapped",
        "you judge degradation by the test error: it shows in the training error",
    ),
]


def check_settled(settled) -> None:
    """Chapter 1, exercise 2: ``settled(shallow, deep)``, the first epoch from which the
    verdict of exercise 1, read at every epoch, stays what it is at the end."""
    got, want = [], _settled_by()
    for _, (s_train, s_test), (d_train, d_test) in SETTLED_CASES:
        shallow, deep = _history(s_train, s_test), _history(d_train, d_test)
        answer = attempt(settled, shallow, deep, what="settled(shallow, deep)")
        if isinstance(answer, str) or not isinstance(answer, numbers.Integral):
            raise NotYet(
                f"settled returns an epoch, a whole number counted from 1; got {answer!r}",
                "not an epoch",
            )
        got.append(int(answer))
    judge_outputs(
        got, want, SETTLED_MISTAKES, same=lambda a, b: a == b, case=lambda i: SETTLED_CASES[i][0]
    )
    passed(
        f"{len(got)} pairs of runs whose curves cross: a verdict read before it settles is a "
        "guess about the end of training, so the book reads its verdicts at the last epoch"
    )


TEST_GAP_CHOICES = ("larger", "smaller", "same")


def _final_error(runs: list[History], column: str) -> float:
    """Mean over seeds of the final epoch's error, in points, from the ``column`` accuracy."""
    finals = [h.final.get(column) for h in runs]
    if any(a is None for a in finals):
        raise NotYet(f"a recorded run has no final {column}: it was not tested", "untested")
    return 100 * (1 - statistics.fmean(finals))


def measure_test_gap(records: dict[str, list[History]]) -> Measurement:
    """plain-56's final error minus plain-20's, mean over seeds, on the training data and on
    the test images: whether the test gap is "larger" or "smaller" by more than 2 points,
    else the "same"."""
    if not records.get("plain20") or not records.get("plain56"):
        raise NotYet("the recorded plain20 and plain56 runs are needed here", "no records")
    gap = {}
    for column in ("train_acc", "test_acc"):
        shallow, deep = (_final_error(records[k], column) for k in ("plain20", "plain56"))
        gap[column] = deep - shallow
        print(
            f"{column[:-4]:5s} error: plain-20 {shallow:.1f}%, plain-56 {deep:.1f}%, "
            f"gap {gap[column]:+.1f} points"
        )
    change = gap["test_acc"] - gap["train_acc"]
    truth = "larger" if change > 2 else "smaller" if change < -2 else "same"
    return Measurement(
        truth,
        f"On the test images the gap is {change:+.1f} points from the training gap.",
        f"the test gap is {truth} ({change:+.1f} points): test error is training error plus "
        "what a network loses on images it has not seen, and a network that fits its training "
        "data poorly has little to lose",
    )


def run_test_gap_prediction(prediction, records: dict[str, list[History]]) -> None:
    """Chapter 1, predict then run: is plain-56's gap to plain-20 larger or smaller on the test
    images than on the training data, at the end of the recorded runs?"""
    guess = choice(prediction, TEST_GAP_CHOICES)
    judge_prediction(guess, measure_test_gap(records))
