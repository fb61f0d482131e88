"""Every exercise's published solution passes its check; plausible wrong answers (at least two
per exercise) are each rejected with the mistake they make; the stubs the chapters show are
"not attempted"; and the checks judge by behaviour, whatever the reader's seed or names."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book import exercises as ex
from resnet_lab.book.exercises import NotAttempted, NotYet
from resnet_lab.book.exercises import solutions as S
from resnet_lab.book.exercises.background import (
    DIAGNOSE_CASES,
    DIAGNOSE_MISTAKES,
    SETTLED_MISTAKES,
    _rule,
    _settled_by,
    measure_test_gap,
)
from resnet_lab.book.exercises.deep_networks import STREAM_MISTAKES, measure_plain110
from resnet_lab.book.exercises.finetuning import measure_zero_lr
from resnet_lab.book.exercises.full_network import (
    CIFAR_DEPTHS,
    CIFAR_MISTAKES,
    _article_loop_number,
    _cifar_count,
    random_loop_number,
)
from resnet_lab.book.exercises.own_resnet import cifar_forward
from resnet_lab.book.exercises.residual_block import OPTION_C_MISTAKES, _option_c_count
from resnet_lab.book.exercises.residual_math import TWO_BLOCK_MISTAKES
from resnet_lab.book.exercises.tools import judge_prediction
from resnet_lab.book.exercises.trained_network import (
    LESION_CHOICES,
    SEEDS_CASES,
    SEEDS_MISTAKES,
    measure_shortcut_lesion,
)
from resnet_lab.book.exercises.training import (
    COSINE_MISTAKES,
    _onecycle_steps,
    _trainer_warmup,
)
from resnet_lab.book.exercises.what_next import _inputs_kept_in_a_network
from resnet_lab.checkpoints import History
from resnet_lab.finetune import freeze, replace_head
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet, count_params, resnet20


def accepted(capsys, check, *args):
    check(*args)
    out = capsys.readouterr().out
    assert "correct!" in out, out


def rejected(check, *args, mistake):
    with pytest.raises(NotYet) as e:
        check(*args)
    assert e.value.mistake == mistake, f"{e.value.mistake}: {e.value}"
    return str(e.value)


def stub(*_args):
    raise NotImplementedError


def test_a_verdict_is_one_line_in_a_notebook():
    e = NotYet("your block uses bn1 twice", "reused bn1")
    assert e._render_traceback_() == ["NotYet: your block uses bn1 twice"]
    assert isinstance(e, AssertionError) and isinstance(NotAttempted("x"), NotYet)


# ---------------------------------------------------------------------------- chapter 1


def _first(h):
    return h.epochs[0]


def diagnose_with(pick):
    """The published rule, on the epoch ``pick`` chooses (a learner's likely slip)."""

    def diagnose(shallow, deep):
        s, d = pick(shallow), pick(deep)
        if d["train_acc"] < s["train_acc"]:
            return "degradation"
        if d["test_acc"] < s["test_acc"]:
            return "overfitting"
        return "fine"

    return diagnose


def best_epoch(h):
    return {k: max(h[k]) for k in ("train_acc", "test_acc")}


def diagnose_test_first(shallow, deep):
    s, d = shallow.final, deep.final
    if d["test_acc"] < s["test_acc"]:
        return "overfitting"
    return "degradation" if d["train_acc"] < s["train_acc"] else "fine"


def diagnose_strict(shallow, deep):  # "lower training error" read strictly: ties are "fine"
    s, d = shallow.final, deep.final
    if d["train_acc"] < s["train_acc"]:
        return "degradation"
    if d["train_acc"] > s["train_acc"] and d["test_acc"] < s["test_acc"]:
        return "overfitting"
    return "fine"


def diagnose_as_errors(shallow, deep):  # treats accuracies as errors
    s, d = shallow.final, deep.final
    if d["train_acc"] > s["train_acc"]:
        return "degradation"
    if d["test_acc"] > s["test_acc"]:
        return "overfitting"
    return "fine"


def test_diagnose(capsys):
    accepted(capsys, ex.check_diagnose, S.diagnose)
    accepted(capsys, ex.check_diagnose, lambda s, d: S.diagnose(s, d).upper())  # any case
    rejected(ex.check_diagnose, stub, mistake="not attempted")
    rejected(ex.check_diagnose, diagnose_with(_first), mistake="first epoch")
    rejected(ex.check_diagnose, diagnose_with(best_epoch), mistake="best epoch")
    rejected(ex.check_diagnose, diagnose_test_first, mistake="test first")
    rejected(ex.check_diagnose, diagnose_strict, mistake="tie")
    rejected(ex.check_diagnose, diagnose_as_errors, mistake="accuracy as error")
    said = rejected(ex.check_diagnose, lambda s, d: None, mistake="wrong")
    assert "want 'degradation'" in said


def test_the_diagnose_cases_tell_every_mistake_apart():
    want = [_rule(s[0][-1], s[1][-1], d[0][-1], d[1][-1]) for _, s, d in DIAGNOSE_CASES]
    assert set(want) == {"degradation", "overfitting", "fine"}
    outputs = [tuple(o) for o, _, _ in DIAGNOSE_MISTAKES]
    assert tuple(want) not in outputs and len(set(outputs)) == len(outputs)


def verdicts_of(shallow, deep, train="train_acc", test="test_acc"):
    """The published rule at every epoch; ``train`` and ``test`` name the columns it reads."""
    out = []
    for s_train, s_test, d_train, d_test in zip(
        shallow[train], shallow[test], deep[train], deep[test]
    ):
        if d_train < s_train:
            out.append("degradation")
        elif d_test < s_test:
            out.append("overfitting")
        else:
            out.append("fine")
    return out


def from_the_end(v):  # the first epoch of the last stretch of equal verdicts
    epoch = len(v)
    while epoch > 1 and v[epoch - 2] == v[-1]:
        epoch -= 1
    return epoch


def settled_by(answer, **columns):
    return lambda shallow, deep: answer(verdicts_of(shallow, deep, **columns))


def test_settled(capsys):
    accepted(capsys, ex.check_settled, S.settled)
    accepted(capsys, ex.check_settled, settled_by(from_the_end))  # written another way
    accepted(  # a numpy integer is a whole number too
        capsys, ex.check_settled, lambda s, d: np.int64(S.settled(s, d))
    )
    rejected(ex.check_settled, stub, mistake="not attempted")
    first_match = settled_by(lambda v: v.index(v[-1]) + 1)  # even if it leaves again
    rejected(ex.check_settled, first_match, mistake="first match")
    rejected(ex.check_settled, settled_by(lambda v: from_the_end(v) - 1), mistake="one early")
    stretch = settled_by(lambda v: len(v) - from_the_end(v) + 1)  # how long it lasted
    rejected(ex.check_settled, stretch, mistake="stretch")
    swapped = settled_by(from_the_end, train="test_acc", test="train_acc")
    rejected(ex.check_settled, swapped, mistake="columns swapped")
    said = rejected(ex.check_settled, lambda s, d: "fine", mistake="not an epoch")
    assert "'fine'" in said
    rejected(ex.check_settled, lambda s, d: 2, mistake="wrong")


def test_the_settled_cases_tell_every_mistake_apart():
    want = tuple(_settled_by())
    outputs = [tuple(o) for o, _, _ in SETTLED_MISTAKES]
    assert want not in outputs and len(set(outputs)) == len(outputs)
    assert len(set(want)) > 2  # the verdicts settle at different epochs


def _final(train, test):
    return History(epochs=[{"epoch": 1, "seconds": 1.0, "train_acc": train, "test_acc": test}])


def test_test_gap_prediction_reads_the_records(capsys):
    # plain-56 far behind in training, less far on the test images: "smaller"
    shrinking = {"plain20": [_final(0.7, 0.65)] * 2, "plain56": [_final(0.35, 0.38)] * 2}
    rejected(ex.run_test_gap_prediction, None, shrinking, mistake="not attempted")
    rejected(ex.run_test_gap_prediction, "bigger", shrinking, mistake="not a choice")
    accepted(capsys, ex.run_test_gap_prediction, S.TEST_GAP_PREDICTION, shrinking)
    rejected(ex.run_test_gap_prediction, "larger", shrinking, mistake="predicted larger")
    rejected(ex.run_test_gap_prediction, "same", shrinking, mistake="predicted same")
    # the verdict is the records', not typed: other runs make "larger" right
    growing = {"plain20": [_final(0.7, 0.7)], "plain56": [_final(0.5, 0.4)]}
    accepted(capsys, ex.run_test_gap_prediction, "larger", growing)
    rejected(ex.run_test_gap_prediction, "smaller", growing, mistake="predicted smaller")
    rejected(ex.run_test_gap_prediction, "smaller", {}, mistake="no records")
    untested = {"plain20": [_final(0.7, None)], "plain56": [_final(0.5, None)]}
    rejected(ex.run_test_gap_prediction, "smaller", untested, mistake="untested")


def test_the_recorded_runs_answer_the_prediction():
    """The shipped records give the published answer (the chapter's reader sees them)."""
    from resnet_lab.lab.results import load_sweep

    assert measure_test_gap(load_sweep("degradation")).truth == S.TEST_GAP_PREDICTION


# ---------------------------------------------------------------------------- chapter 2


def gain_with(block, backward=False):
    def gradient_gain(lam, depth):
        x0 = torch.randn(5, requires_grad=True)
        x = x0
        for _ in range(depth):
            x = block(lam, x)
        g = torch.ones(5)
        if backward:  # .backward() and x0.grad instead of torch.autograd.grad
            x.backward(g)
            return (x0.grad.norm() / g.norm()).item()
        (grad,) = torch.autograd.grad(x, x0, grad_outputs=g)
        return (grad.norm() / g.norm()).item()

    return gradient_gain


def gain_by_jacobian(lam, depth):  # autograd through torch.func: one right answer more
    def stack(x):
        for _ in range(depth):
            x = lam * x
        return x

    J = torch.func.jacrev(stack)(torch.randn(3, dtype=torch.float64))
    return torch.linalg.matrix_norm(J, 2).item()


def test_gradient_gain(capsys):
    accepted(capsys, ex.check_gradient_gain, S.gradient_gain)
    accepted(capsys, ex.check_gradient_gain, gain_with(lambda lam, x: lam * x))
    accepted(capsys, ex.check_gradient_gain, gain_with(lambda lam, x: lam * x, backward=True))
    accepted(capsys, ex.check_gradient_gain, gain_by_jacobian)
    assert "λ^" not in capsys.readouterr().out  # the closed form is the reader's to derive
    rejected(ex.check_gradient_gain, stub, mistake="not attempted")
    # the derivation alone, without autograd, is right in number but not what is asked
    message = rejected(ex.check_gradient_gain, lambda lam, d: lam**d, mistake="no autograd")
    assert "autograd" in message and "λ^" not in message
    rejected(ex.check_gradient_gain, lambda lam, d: np.float32(lam) ** d, mistake="no autograd")
    scaled_branch = gain_with(lambda lam, x: x + lam * torch.zeros_like(x))
    rejected(ex.check_gradient_gain, scaled_branch, mistake="branch scaled")
    rejected(ex.check_gradient_gain, lambda lam, d: lam, mistake="once")
    rejected(ex.check_gradient_gain, lambda lam, d: lam * d, mistake="sum")
    rejected(ex.check_gradient_gain, lambda lam, d: lam**-d, mistake="inverted")
    one_short = gain_with(lambda lam, x: lam * x)
    rejected(
        ex.check_gradient_gain, lambda lam, d: one_short(lam, d - 1), mistake="one block short"
    )


def test_path_count(capsys):
    accepted(capsys, ex.check_path_count, S.N_TERMS, S.N_TWO_BRANCHES)
    accepted(capsys, ex.check_path_count, float(2**27), sum([26 - i for i in range(27)]))
    rejected(ex.check_path_count, None, None, mistake="not attempted")
    rejected(ex.check_path_count, 28, 351, mistake="one per block")
    rejected(ex.check_path_count, 2**27 - 1, 351, mistake="no direct path")
    rejected(ex.check_path_count, 2**27, 27 * 26, mistake="ordered")
    rejected(ex.check_path_count, 2**27, 54, mistake="two per block")


def two_blocks_as(variant):
    """A reader's answer that computes one of the check's variants (right or a mistake)."""
    from resnet_lab.book.exercises.residual_math import _variants

    return lambda *args: _variants(*args)[variant]


def two_blocks_by_rows(J_A, J_B, d_A, d_B):  # right, written with broadcasting, in numpy
    eye = np.eye(len(J_A))
    A, B = d_A.numpy()[:, None] * (eye + J_A.numpy()), d_B.numpy()[:, None] * (eye + J_B.numpy())
    return B @ A


def test_two_basic_blocks(capsys):
    accepted(capsys, ex.check_two_basic_blocks, S.two_basic_blocks)
    accepted(capsys, ex.check_two_basic_blocks, two_blocks_by_rows)
    rejected(ex.check_two_basic_blocks, stub, mistake="not attempted")
    for mistake in TWO_BLOCK_MISTAKES:
        rejected(ex.check_two_basic_blocks, two_blocks_as(mistake), mistake=mistake)
    rejected(ex.check_two_basic_blocks, lambda *a: a[0][:3], mistake="shape")


# -------------------------------------------------------------- chapter 3 (deep networks)


def test_plain110_prediction(capsys):
    # small images keep it fast; the verdict holds for any batch and any seed
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(2, 3, 16, 16, generator=g), torch.arange(2)
    rejected(ex.run_plain110, None, images, labels, mistake="not attempted")
    rejected(ex.run_plain110, "explode", images, labels, mistake="not a choice")
    state = torch.random.get_rng_state()
    accepted(capsys, ex.run_plain110, S.PLAIN110_PREDICTION, images, labels)
    assert torch.equal(torch.random.get_rng_state(), state)  # the reader's seed untouched
    for seed in (1, 2):
        measured = measure_plain110(images, labels, seed=seed)
        assert measured.truth == S.PLAIN110_PREDICTION and "ResNet-110" in capsys.readouterr().out
    rejected(judge_prediction, "same", measured, mistake="predicted same")
    rejected(judge_prediction, "double", measured, mistake="predicted double")


def test_stream_std(capsys):
    accepted(capsys, ex.check_stream_std, S.stream_std)
    # other right answers: a tensor, a closed form with a cumulative sum
    accepted(
        capsys,
        ex.check_stream_std,
        lambda x0, s: (x0**2 + torch.tensor(s, dtype=torch.float64).pow(2).cumsum(0)).sqrt(),
    )
    rejected(ex.check_stream_std, stub, mistake="not attempted")
    for f, key, _ in STREAM_MISTAKES:
        rejected(ex.check_stream_std, f, mistake=key)
    rejected(ex.check_stream_std, lambda x0, s: math.hypot(x0, *s), mistake="type")
    rejected(ex.check_stream_std, lambda x0, s: S.stream_std(x0, s)[:-1], mistake="length")


def _standardised(f):
    return (f - f.mean(0)) / f.std(0, unbiased=False)


def test_collapsed_features(capsys):
    accepted(capsys, ex.check_collapsed_features, S.collapsed_features)

    def signs(n, c):  # another right answer: ±one vector, the unbiased spread, float64
        v = torch.randn(n, 1, dtype=torch.float64)
        sign = torch.tensor([(-1.0) ** j for j in range(c)], dtype=torch.float64)
        return (v - v.mean()) / v.std() * sign

    accepted(capsys, ex.check_collapsed_features, signs)
    rejected(ex.check_collapsed_features, stub, mistake="not attempted")
    rejected(ex.check_collapsed_features, lambda n, c: torch.zeros(n, c), mistake="no spread")
    rejected(
        ex.check_collapsed_features,
        lambda n, c: torch.randn(n, 1).expand(n, c) * 3,
        mistake="not scaled",
    )
    rejected(
        ex.check_collapsed_features,
        lambda n, c: S.collapsed_features(n, c) + 1,
        mistake="not centred",
    )
    independent = lambda n, c: _standardised(torch.randn(n, c))  # noqa: E731
    rejected(ex.check_collapsed_features, independent, mistake="independent channels")

    def two_directions(n, c):
        a = torch.randn(n, 2)
        return _standardised(a[:, [j % 2 for j in range(c)]])

    rejected(ex.check_collapsed_features, two_directions, mistake="too many directions")
    rejected(ex.check_collapsed_features, lambda n, c: S.collapsed_features(c, n), mistake="shape")
    rejected(ex.check_collapsed_features, lambda n, c: [[0.0]], mistake="type")


# ---------------------------------------------------------------------------- chapter 4 (blocks)


def with_forward(base, forward):
    """The chapter's class (its ``__init__``), with a ``forward`` of a test's making."""
    return type("Mine", (base,), {"forward": forward})


def bottleneck(forward):
    return with_forward(S.MyPreActBottleneck, forward)


def preact(m, x, bns=("bn1", "bn2", "bn3"), relu_after=False, shortcut=True):
    b1, b2, b3 = (getattr(m, n) for n in bns)
    out = m.conv1(torch.relu(b1(x)))
    out = m.conv2(torch.relu(b2(out)))
    out = m.conv3(torch.relu(b3(out)))
    out = out + x if shortcut else out
    return torch.relu(out) if relu_after else out


class OwnNames(nn.Module):  # a correct block written differently: other names, nn.ReLU
    def __init__(self, in_planes, planes):
        super().__init__()
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn3, self.bn2, self.bn1 = (nn.BatchNorm2d(c) for c in (planes, planes, in_planes))
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.conv1(self.act(self.bn1(x)))
        return x + self.conv3(self.act(self.bn3(self.conv2(self.act(self.bn2(h))))))


def activated_shortcut(m, x):  # the shortcut of PreActBlock's shape-changing blocks
    a = torch.relu(m.bn1(x))
    out = m.conv2(torch.relu(m.bn2(m.conv1(a))))
    return m.conv3(torch.relu(m.bn3(out))) + a


def overwritten_input(m, x):  # x = bn1(x) reuses the name the shortcut needs
    x = m.bn1(x)
    out = m.conv2(torch.relu(m.bn2(m.conv1(torch.relu(x)))))
    return m.conv3(torch.relu(m.bn3(out))) + x


def test_preact_bottleneck(capsys):
    accepted(capsys, ex.check_preact_bottleneck, S.MyPreActBottleneck)
    accepted(capsys, ex.check_preact_bottleneck, OwnNames)
    torch.manual_seed(123)  # the reader's seed does not matter
    accepted(capsys, ex.check_preact_bottleneck, bottleneck(preact))
    rejected(ex.check_preact_bottleneck, bottleneck(stub), mistake="not attempted")
    said = rejected(
        ex.check_preact_bottleneck,
        bottleneck(lambda m, x: preact(m, x, bns=("bn1", "bn2", "bn2"))),
        mistake="reused bn2",
    )
    assert "uses bn2 2 times and never bn3" in said
    rejected(
        ex.check_preact_bottleneck,
        bottleneck(lambda m, x: preact(m, x, bns=("bn1", "bn3", "bn2"))),
        mistake="swapped bn2 bn3",
    )
    rejected(
        ex.check_preact_bottleneck,
        bottleneck(lambda m, x: preact(m, x, relu_after=True)),
        mistake="relu after sum",
    )
    rejected(
        ex.check_preact_bottleneck,
        bottleneck(lambda m, x: preact(m, x, shortcut=False)),
        mistake="no shortcut",
    )
    rejected(
        ex.check_preact_bottleneck, bottleneck(activated_shortcut), mistake="activated shortcut"
    )
    rejected(
        ex.check_preact_bottleneck, bottleneck(overwritten_input), mistake="normalised shortcut"
    )
    rejected(ex.check_preact_bottleneck, S.MyPreActBottleneck(64, 16), mistake="instance")
    rejected(
        ex.check_preact_bottleneck,
        bottleneck(
            lambda m, x: (
                m.conv3(torch.relu(m.bn3(m.conv2(m.bn2(m.conv1(torch.relu(m.bn1(x)))))))) + x
            )
        ),
        mistake="no relu 2",
    )
    rejected(
        ex.check_preact_bottleneck,
        bottleneck(  # the post-activation order
            lambda m, x: (
                torch.relu(
                    m.bn3(m.conv3(torch.relu(m.bn2(m.conv2(torch.relu(m.bn1(m.conv1(x))))))))
                )
                + x
            )
        ),
        mistake="post-activation",
    )


def test_option_c(capsys):
    accepted(capsys, ex.check_option_c, S.OPTION_C_PARAMS)
    assert _option_c_count() == S.OPTION_C_PARAMS  # the formula is the networks' difference
    rejected(ex.check_option_c, None, mistake="not attempted")
    rejected(ex.check_option_c, _option_c_count(bn=0), mistake="no bn")
    rejected(ex.check_option_c, _option_c_count(bn=4), mistake="running stats")
    rejected(ex.check_option_c, _option_c_count(every=False), mistake="option B")
    rejected(ex.check_option_c, _option_c_count(first_in=False), mistake="first block")
    rejected(ex.check_option_c, 64 * 64 + 2 * 64, mistake="one block")
    rejected(ex.check_option_c, 14_000, mistake="wrong")
    counts = [_option_c_count(**flags) for flags, _, _ in OPTION_C_MISTAKES]
    assert len(set(counts)) == len(counts) and S.OPTION_C_PARAMS not in counts


def test_zero_init_prediction(capsys):
    rejected(ex.run_zero_init_prediction, None, mistake="not attempted")
    accepted(capsys, ex.run_zero_init_prediction, S.ZERO_INIT_PREDICTION)
    rejected(ex.run_zero_init_prediction, "input", mistake="predicted input")
    rejected(ex.run_zero_init_prediction, "relu", mistake="predicted relu")


# ---------------------------------------------------------------------------- chapter 5 (network)


def test_loop_number(capsys):
    accepted(capsys, ex.check_loop_number, S.LOOP_NUMBER)
    accepted(capsys, ex.check_loop_number, 798.6)  # a reader's simulation, within 1%
    rejected(ex.check_loop_number, None, mistake="not attempted")
    rejected(ex.check_loop_number, "800%", mistake="not a number")
    rejected(ex.check_loop_number, 100 / 128, mistake="per image")
    rejected(ex.check_loop_number, 100 * 32 / 128, mistake="one axis")
    rejected(ex.check_loop_number, 100 * 32**3 / 128, mistake="per batch")
    rejected(ex.check_loop_number, 8, mistake="not percent")
    rejected(ex.check_loop_number, 10, mistake="ten classes")
    rejected(ex.check_loop_number, 8000, mistake="any label")
    message = rejected(ex.check_loop_number, 400, mistake="wrong")
    assert "800" not in message


def test_the_loop_number_is_what_the_article_loop_prints():
    # the expected value, measured the article's way on random predictions of the 128 channels
    assert abs(random_loop_number(300, seed=1) - S.LOOP_NUMBER) < 0.01 * S.LOOP_NUMBER
    # and the loop's count is the broadcast the chapter describes: pixel (b, i, j), label j
    predicted, target = torch.randint(0, 10, (32, 32, 32)), torch.randint(0, 10, (32,))
    hits = (predicted == target.view(1, 1, 32)).sum().item()
    assert _article_loop_number(predicted, target) == 100 * hits / 32


def test_affine(capsys):
    accepted(capsys, ex.check_affine, S.AFFINE)
    accepted(capsys, ex.check_affine, ["A", "e", "b"])  # any collection, any case
    rejected(ex.check_affine, None, mistake="not attempted")
    rejected(ex.check_affine, {"e"}, mistake="2 wrong")
    rejected(ex.check_affine, {"a", "b", "c", "e"}, mistake="1 wrong")
    message = rejected(ex.check_affine, {"a", "b", "d", "e"}, mistake="1 wrong")
    assert "(d)" not in message and "max" not in message  # how many, never which
    rejected(ex.check_affine, {"f"}, mistake="not a choice")


def pair(forward):
    return with_forward(S.ArticlePair, forward)


def test_article_pair(capsys):
    accepted(capsys, ex.check_article_pair, S.ArticlePair)
    accepted(  # the 1x1 first, the functional ReLU
        capsys, ex.check_article_pair, pair(lambda m, x: m.project(x) + m.conv2(F.relu(m.conv1(x))))
    )
    message = rejected(
        ex.check_article_pair, pair(lambda m, x: m.conv2(m.conv1(x))), mistake="not attempted"
    )
    assert "ReLU" not in message and "shortcut" not in message  # the stub gives nothing away
    planted = {
        "no relu": lambda m, x: m.conv2(m.conv1(x)) + m.project(x),
        "no shortcut": lambda m, x: m.conv2(torch.relu(m.conv1(x))),
        "relu after sum": lambda m, x: torch.relu(m.conv2(torch.relu(m.conv1(x))) + m.project(x)),
        "x inside": lambda m, x: m.conv2(torch.relu(m.conv1(x)) + m.project(x)),
        "relu on input": lambda m, x: m.conv2(torch.relu(m.conv1(torch.relu(x)))) + m.project(x),
        "conv1 shortcut": lambda m, x: (lambda h: m.conv2(torch.relu(h)) + h)(m.conv1(x)),
        "relu on shortcut": lambda m, x: m.conv2(torch.relu(m.conv1(x))) + torch.relu(m.project(x)),
        "unmatched shortcut": lambda m, x: m.conv2(torch.relu(m.conv1(x))) + x,
        "reused conv2": lambda m, x: m.conv2(F.relu(m.conv2(F.relu(m.conv1(x))))) + m.project(x),
        "wrong": lambda m, x: m.conv2(torch.relu(m.conv1(x))) + 2 * m.project(x),
    }
    for mistake, forward in planted.items():
        message = rejected(ex.check_article_pair, pair(forward), mistake=mistake)
        assert "eval mode" not in message


class PlantedBlock(nn.Module):
    """A reader's basic block, torch only, with the mistakes the flags name."""

    def __init__(
        self,
        c_in,
        width,
        stride,
        *,
        bias=False,
        project=False,
        shortcut="even",
        relu="all",
        widen_late=False,
        stride_late=False,
    ):
        super().__init__()
        mid = c_in if widen_late else width  # widen_late: conv2 widens, not conv1
        self.bn1, self.bn2 = nn.BatchNorm2d(mid), nn.BatchNorm2d(width)  # BNs registered first
        s1, s2 = (1, stride) if stride_late else (stride, 1)  # stride_late: conv2 halves
        self.conv1 = nn.Conv2d(c_in, mid, 3, s1, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(mid, width, 3, s2, padding=1, bias=bias)
        self.proj = (
            nn.Conv2d(c_in, width, 1, stride, bias=False) if project and c_in != width else None
        )
        self.stride, self.extra, self.shortcut, self.relu = stride, width - c_in, shortcut, relu

    def skip(self, x):
        if self.proj is not None:
            return self.proj(x)
        if self.extra == 0 and self.stride == 1:
            return x
        if self.shortcut == "none":
            return 0
        x = x[:, :, :: self.stride, :: self.stride]
        before = 0 if self.shortcut == "after" else self.extra // 2  # fb.resnet.torch: all after
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        out = out if self.relu == "no mid" else torch.relu(out)
        out = self.bn2(self.conv2(out)) + self.skip(x)
        return out if self.relu == "no end" else torch.relu(out)


class PlantedResNet(nn.Module):
    """A reader's CIFAR ResNet, torch only: the stem registered after the stages, the head as
    a flatten; the flags plant one mistake each."""

    def __init__(self, depth, *, widths=(16, 32, 64), stride_on="first", **block):
        super().__init__()
        n, c_in, blocks = (depth - 2) // 6, widths[0], []
        for stage, width in enumerate(widths):
            for j in range(n):
                at = 0 if stride_on == "first" else n - 1
                blocks.append(PlantedBlock(c_in, width, 2 if stage and j == at else 1, **block))
                c_in = width
        self.stages = nn.Sequential(*blocks)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0])
        )
        self.head = nn.Linear(widths[-1], 10)

    def forward(self, x):
        x = self.stages(torch.relu(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def planted(**flags):
    """PlantedResNet with ``flags``, as a class taking the depth alone (what the check builds)."""

    def __init__(self, depth):
        PlantedResNet.__init__(self, depth, **flags)

    return type("MyResNet", (PlantedResNet,), {"__init__": __init__})


class ThreeBlocksAStage(PlantedResNet):  # n fixed at 3, whatever the depth
    def __init__(self, depth):
        super().__init__(20)


class UsesThePackage(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.net = cifar_resnet(depth)

    def forward(self, x):
        return self.net(x)


def test_cifar_resnet(capsys):
    accepted(capsys, ex.check_cifar_resnet, S.MyResNet)
    # other names, another registration order, zeros padded after the input (fb.resnet.torch)
    accepted(capsys, ex.check_cifar_resnet, PlantedResNet)
    accepted(capsys, ex.check_cifar_resnet, planted(shortcut="after"))
    rejected(ex.check_cifar_resnet, None, mistake="not attempted")
    rejected(ex.check_cifar_resnet, Stub, mistake="not attempted")
    rejected(ex.check_cifar_resnet, UsesThePackage, mistake="package block")
    message = rejected(ex.check_cifar_resnet, planted(stride_on="last"), mistake="stride")
    assert "wrong block" in message
    message = rejected(ex.check_cifar_resnet, planted(stride_late=True), mistake="stride")
    assert "second convolution" in message
    rejected(ex.check_cifar_resnet, planted(shortcut="none"), mistake="no shortcut at width change")
    rejected(ex.check_cifar_resnet, planted(project=True), mistake="projection")
    rejected(ex.check_cifar_resnet, planted(widths=(16, 32, 32)), mistake="widths")
    rejected(ex.check_cifar_resnet, planted(widths=(16, 16, 16)), mistake="widths")
    rejected(ex.check_cifar_resnet, planted(relu="no end"), mistake="end relu")
    rejected(ex.check_cifar_resnet, planted(relu="no mid"), mistake="mid relu")
    rejected(ex.check_cifar_resnet, planted(bias=True), mistake="conv bias")
    rejected(ex.check_cifar_resnet, ThreeBlocksAStage, mistake="depth")
    message = rejected(ex.check_cifar_resnet, planted(widen_late=True), mistake="count")
    # no count but the reader's own and the statement's
    numbers = set(re.findall(r"\d[\d,.]*\d|\d", message)) - {"20", "0.27", "269,722"}
    assert numbers == {f"{count_params(planted(widen_late=True)(20)):,}"}, message


class Stub(nn.Module):
    def __init__(self, depth):
        super().__init__()
        raise NotImplementedError


def test_the_written_out_forward_is_the_package_network():
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for depth in (8, 20):
        net = cifar_resnet(depth).eval()
        with torch.no_grad():
            assert torch.equal(cifar_forward(net, x), net(x))
            assert not torch.allclose(cifar_forward(net, x, pad="after"), net(x))


def test_the_count_formula_is_the_model_and_the_mistakes_differ():
    for d in CIFAR_DEPTHS[:-1]:
        assert _cifar_count(d) == count_params(cifar_resnet(d))
    counts = [
        tuple(_cifar_count(d, **flags) for d in CIFAR_DEPTHS) for flags, _, _ in CIFAR_MISTAKES
    ]
    assert len(set(counts)) == len(counts)
    assert tuple(_cifar_count(d) for d in CIFAR_DEPTHS) not in counts


def test_cifar_params(capsys):
    accepted(capsys, ex.check_cifar_params, S.cifar_params)
    rejected(ex.check_cifar_params, stub, mistake="not attempted")
    rejected(ex.check_cifar_params, lambda d: _cifar_count(d, bn=0), mistake="no bn")
    rejected(ex.check_cifar_params, lambda d: _cifar_count(d, half_in=False), mistake="first block")
    rejected(
        ex.check_cifar_params, lambda d: _cifar_count(d, projection=True), mistake="projection"
    )
    rejected(ex.check_cifar_params, lambda d: _cifar_count(d, fc_bias=False), mistake="no fc bias")
    message = rejected(ex.check_cifar_params, lambda d: S.cifar_params(d + 6), mistake="wrong")
    assert "too many" in message and not any(ch.isdigit() for ch in message.split(")", 1)[1])
    rejected(ex.check_cifar_params, lambda d: 19_400_000, mistake="wrong")


# ---------------------------------------------------------------------------- chapter 6


def _cos_fall(s, t, w):
    return 0.5 * (1 + math.cos(math.pi * (s - w) / (t - w)))


def test_onecycle_cosine(capsys):
    accepted(capsys, ex.check_onecycle_cosine, S.onecycle_cosine)
    # another right way: the cosine written as cos², any warm-up formula that agrees
    accepted(
        capsys,
        ex.check_onecycle_cosine,
        lambda s, t, w: (
            min(1.0, (s + 1) / w) if s < w else math.cos(math.pi / 2 * (s - w) / (t - w)) ** 2
        ),
    )
    rejected(ex.check_onecycle_cosine, stub, mistake="not attempted")
    rejected(ex.check_onecycle_cosine, _trainer_warmup, mistake="linear")
    said = rejected(
        ex.check_onecycle_cosine,
        lambda s, t, w: s / w if s < w else _cos_fall(s, t, w),
        mistake="from zero",
    )
    assert "1/warm" in said
    rejected(
        ex.check_onecycle_cosine,
        lambda s, t, w: 1.0 if s < w else _cos_fall(s, t, w),
        mistake="no warm-up",
    )
    rejected(
        ex.check_onecycle_cosine,
        lambda s, t, w: (s + 1) / w if s < w else math.cos(math.pi * (s - w) / (t - w)),
        mistake="cos unshifted",
    )
    rejected(
        ex.check_onecycle_cosine,
        lambda s, t, w: (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * s / t)),
        mistake="angle from step 0",
    )
    rejected(  # off by one at the end: a case the check describes, without the answer's formula
        ex.check_onecycle_cosine,
        lambda s, t, w: (s + 1) / w if s < w else _cos_fall(s, t + 1, w),
        mistake="wrong",
    )


def test_cosine_mistakes_differ_from_the_answer():
    want = _onecycle_steps(S.onecycle_cosine)
    assert want[0] > 0  # step 0 already learns: 1/warm of the peak
    for fn, key, _ in COSINE_MISTAKES:
        assert _onecycle_steps(fn) != want, key


def test_label_smoothing(capsys):
    answer = (S.TRUE_CLASS, S.OTHER_CLASS, S.LOWEST_LOSS, S.LOGIT_GAP)
    accepted(capsys, ex.check_label_smoothing, *answer)
    accepted(capsys, ex.check_label_smoothing, 0.85, 0.05, 0.588, 2.833)  # rounded is right too
    accepted(capsys, ex.check_label_smoothing, 0.85, 0.05, 0.588, math.log(0.85) - math.log(0.05))
    rejected(ex.check_label_smoothing, None, 0.05, 0.5, 2.8, mistake="not attempted")
    rejected(ex.check_label_smoothing, 0.8, 0.05, *answer[2:], mistake="true class no share")
    rejected(ex.check_label_smoothing, 0.85, 0.2 / 3, *answer[2:], mistake="others only")
    rejected(ex.check_label_smoothing, 0.85, 0.05, 0.0, answer[3], mistake="zero")
    rejected(ex.check_label_smoothing, 0.85, 0.05, math.log(4), answer[3], mistake="uniform")
    rejected(ex.check_label_smoothing, *answer[:3], 17.0, mistake="ratio")
    rejected(ex.check_label_smoothing, *answer[:3], 0.8, mistake="probability gap")
    rejected(ex.check_label_smoothing, *answer[:3], math.log(16), mistake="gap without share")
    said = rejected(ex.check_label_smoothing, *answer[:3], 5.0, mistake="wrong")
    assert "2.83" not in said  # the hint, not the answer


def _test_loss(*, mode="eval", grad=False, per_batch=False, scale=1.0, count=False):
    """The solution with one planted mistake."""

    def fn(model, loader):
        model.train(mode == "train")
        losses, hits, sizes = [], [], []
        with torch.set_grad_enabled(grad):
            for x, y in loader:
                logits = model(x)
                losses.append(F.cross_entropy(logits, y, reduction="sum").item())
                hits.append((logits.argmax(1) == y).sum().item())
                sizes.append(len(y))
        n = sum(sizes)
        if per_batch:
            loss = sum(a / b for a, b in zip(losses, sizes)) / len(sizes)
            acc = sum(a / b for a, b in zip(hits, sizes)) / len(sizes)
        else:
            loss, acc = sum(losses) / n, sum(hits) / n
        return loss, (sum(hits) if count else scale * acc)

    return fn


def test_test_loss(capsys):
    accepted(capsys, ex.check_test_loss, S.test_loss_and_accuracy)

    def with_inference_mode(model, loader):  # another right way: tensors, inference_mode
        model.eval()
        with torch.inference_mode():
            pairs = [
                (F.cross_entropy(model(x), y, reduction="sum"), (model(x).argmax(1) == y).sum())
                for x, y in loader
            ]
        n = len(loader.dataset)
        return sum(p[0] for p in pairs) / n, sum(p[1] for p in pairs) / n

    accepted(capsys, ex.check_test_loss, with_inference_mode)
    rejected(ex.check_test_loss, stub, mistake="not attempted")
    rejected(ex.check_test_loss, _test_loss(mode="train"), mistake="train mode")
    rejected(ex.check_test_loss, _test_loss(grad=True), mistake="graph")
    rejected(ex.check_test_loss, _test_loss(per_batch=True), mistake="mean of batches")
    rejected(ex.check_test_loss, _test_loss(count=True), mistake="count")
    rejected(ex.check_test_loss, _test_loss(scale=100), mistake="percent")
    rejected(
        ex.check_test_loss,
        lambda m, loader: S.test_loss_and_accuracy(m, loader)[0],
        mistake="not a pair",
    )


# ---------------------------------------------------------------------------- chapter 7


def test_seeds_needed(capsys):
    accepted(capsys, ex.check_seeds_needed, S.seeds_needed)

    def by_search(diff, sd):  # another right way: try n = 2, 3, ... with the SE formula
        n = 2
        while diff <= 2 * math.sqrt(2 * sd**2 / n):
            n += 1
        return n

    accepted(capsys, ex.check_seeds_needed, by_search)
    rejected(ex.check_seeds_needed, stub, mistake="not attempted")
    rejected(
        ex.check_seeds_needed, lambda d, s: math.floor(8 * s**2 / d**2) + 1, mistake="one seed"
    )
    rejected(
        ex.check_seeds_needed,
        lambda d, s: max(2, math.floor(4 * s**2 / d**2) + 1),
        mistake="one side",
    )
    rejected(
        ex.check_seeds_needed,
        lambda d, s: max(2, math.floor(2 * s**2 / d**2) + 1),
        mistake="one SE",
    )
    rejected(
        ex.check_seeds_needed,
        lambda d, s: max(2, math.floor(8 * s**2 / d**2)),
        mistake="rounded down",
    )
    rejected(
        ex.check_seeds_needed,
        lambda d, s: max(2, math.floor(2 * math.sqrt(2) * s / d) + 1),
        mistake="no square root",
    )


def test_seeds_mistakes_differ_from_the_answer():
    want = [S.seeds_needed(d, s) for d, s in SEEDS_CASES]
    for fn, key, _ in SEEDS_MISTAKES:
        assert [fn(d, s) for d, s in SEEDS_CASES] != want, key


def test_shortcut_lesion(capsys, tiny_data):
    torch.manual_seed(0)
    net = cifar_resnet(8).eval()
    loader = CifarLoader(
        tiny_data.test_images[:20], tiny_data.test_labels[:20], 20, train=False, device="cpu"
    )
    rejected(ex.run_shortcut_lesion, None, net, loader, mistake="not attempted")
    measured = measure_shortcut_lesion(net, loader)
    assert all(b.skip for b in net.blocks())  # every shortcut put back
    for guess in LESION_CHOICES:  # exactly what was measured passes
        if guess == measured.truth:
            judge_prediction(guess, measured)
        else:
            rejected(judge_prediction, guess, measured, mistake=f"predicted {guess}")
    with pytest.raises(ValueError, match="residual network"):
        ex.run_shortcut_lesion("branch", cifar_resnet(8, skip=False), loader)


# ---------------------------------------------------------------------------- chapter 8


def probe_by_grad(model, k):
    """The old accepted answer: a new head and requires_grad, nothing for BN."""
    model.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, k)
    return model


def probe_overriding_train(model, k):
    """Another right answer: the model's own train() keeps every BN in eval mode."""
    probe_by_grad(model, k)
    plain_train, norms = model.train, [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(mode=True):
        plain_train(mode)
        for bn in norms:
            bn.eval()
        return model

    model.train = train
    return model


def probe_by_eval(model, k):
    return probe_by_grad(model, k).eval()


def probe_momentum_zero(model, k):
    """The statistics stay, but train mode normalises with the batch's own."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0
    return probe_by_grad(model, k)


def probe_untracked(model, k):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    return probe_by_grad(model, k)


def probe_unfrozen(model, k):
    model.fc = nn.Linear(model.fc.in_features, k)
    return model


def probe_all_frozen(model, k):
    probe_by_grad(model, k)
    return model.requires_grad_(False)


def test_linear_probe(capsys):
    accepted(capsys, ex.check_linear_probe, S.linear_probe)
    accepted(capsys, ex.check_linear_probe, probe_overriding_train)
    rejected(ex.check_linear_probe, stub, mistake="not attempted")
    said = rejected(ex.check_linear_probe, probe_by_grad, mistake="BN statistics move")
    assert "running_mean" in said and "model.train()" in said
    rejected(ex.check_linear_probe, probe_by_eval, mistake="BN statistics move")
    rejected(ex.check_linear_probe, probe_momentum_zero, mistake="batch statistics")
    rejected(ex.check_linear_probe, probe_untracked, mistake="batch statistics")
    said = rejected(ex.check_linear_probe, probe_unfrozen, mistake="backbone trains")
    assert "eval()" not in said
    said = rejected(
        ex.check_linear_probe,
        lambda m, k: probe_unfrozen(m, k).eval(),
        mistake="backbone trains",
    )
    assert "eval() freezes nothing" in said
    rejected(ex.check_linear_probe, probe_all_frozen, mistake="head frozen")
    rejected(
        ex.check_linear_probe, lambda m, k: replace_head(freeze(m), k), mistake="BN statistics move"
    )
    # the package's helpers with the BN fixed pass on resnet_lab's network, not on torchvision's
    said = rejected(
        ex.check_linear_probe,
        lambda m, k: S.linear_probe(replace_head(m, 10), k),
        mistake="not plain",
    )
    assert "plain PyTorch" in said
    rejected(
        ex.check_linear_probe, lambda m, k: probe_by_grad(resnet20(), k), mistake="new network"
    )
    rejected(ex.check_linear_probe, lambda m, k: S.linear_probe(m, 3), mistake="head size")
    fixed_width = lambda m, k: S.linear_probe(m, k).__setattr__("fc", nn.Linear(64, k)) or m  # noqa: E731
    rejected(ex.check_linear_probe, fixed_width, mistake="head size")
    rejected(ex.check_linear_probe, lambda m, k: None, mistake="no model")


def groups_by(rate_of):
    """Parameter groups from ``rate_of(part, stages, lr, factor)``, a part being fc, layerN or
    stem: a planted mistake's rule."""

    def layerwise_groups(model, lr, factor):
        n = sum(name.startswith("layer") for name, _ in model.named_children())
        groups = {}
        for name, p in model.named_parameters():
            top = name.split(".")[0]
            part = top if top == "fc" or top.startswith("layer") else "stem"
            groups.setdefault(rate_of(part, n, lr, factor), []).append(p)
        return [{"params": ps, "lr": r} for r, ps in groups.items()]

    return layerwise_groups


def _depth(part, n):
    """Steps below the head: fc 0, layerN 1, ..., layer1 N, stem N + 1."""
    return 0 if part == "fc" else n + 1 if part == "stem" else n + 1 - int(part[5:])


def test_layerwise_groups(capsys):
    accepted(capsys, ex.check_layerwise_groups, S.layerwise_groups)
    one_each = groups_by(lambda part, n, lr, f: lr * f ** _depth(part, n))
    accepted(capsys, ex.check_layerwise_groups, one_each)

    def per_parameter(model, lr, factor):  # one group per parameter is as right
        return [
            {"params": [p], "lr": g["lr"]}
            for g in S.layerwise_groups(model, lr, factor)
            for p in g["params"]
        ]

    accepted(capsys, ex.check_layerwise_groups, per_parameter)
    rejected(ex.check_layerwise_groups, stub, mistake="not attempted")
    reversed_ = groups_by(lambda part, n, lr, f: lr * f ** (n + 1 - _depth(part, n)))
    rejected(ex.check_layerwise_groups, reversed_, mistake="reversed")
    short = groups_by(lambda part, n, lr, f: lr * f ** max(0, _depth(part, n) - 1))
    rejected(ex.check_layerwise_groups, short, mistake="off by one")
    stem = groups_by(lambda part, n, lr, f: lr * f ** min(n, _depth(part, n)))
    rejected(ex.check_layerwise_groups, stem, mistake="stem")
    squared = groups_by(lambda part, n, lr, f: lr * f ** (2 * _depth(part, n)))
    rejected(ex.check_layerwise_groups, squared, mistake="wrong rate")
    three = groups_by(lambda part, n, lr, f: lr * f ** _depth(part, 3))
    said = rejected(ex.check_layerwise_groups, three, mistake="three stages")
    assert "resnet18" in said

    def no_lr(model, lr, factor):
        return [{"params": g["params"]} for g in S.layerwise_groups(model, lr, factor)]

    rejected(ex.check_layerwise_groups, no_lr, mistake="no lr")

    def twice(model, lr, factor):
        return [*S.layerwise_groups(model, lr, factor), {"params": [model.fc.weight], "lr": lr}]

    rejected(ex.check_layerwise_groups, twice, mistake="two groups")

    def convs_only(model, lr, factor):
        groups = S.layerwise_groups(model, lr, factor)
        return [{**g, "params": [p for p in g["params"] if p.ndim > 1]} for g in groups]

    said = rejected(ex.check_layerwise_groups, convs_only, mistake="missing")
    assert "no group" in said
    rejected(ex.check_layerwise_groups, lambda m, lr, f: m.parameters(), mistake="no lr")


def test_zero_lr_prediction(capsys, tiny_data):
    small = tiny_data.subset(32, 10, seed=0)
    rejected(ex.run_zero_lr_prediction, None, small, mistake="not attempted")
    accepted(capsys, ex.run_zero_lr_prediction, S.ZERO_LR_PREDICTION, small)
    measured = measure_zero_lr(small)
    rejected(judge_prediction, "nothing", measured, mistake="predicted nothing")
    rejected(judge_prediction, "weights", measured, mistake="predicted weights")


# ---------------------------------------------------------------------------- chapter 9


def post_norm(forward):
    return with_forward(S.PreNormBlock, forward)


def test_post_norm_block(capsys):
    accepted(capsys, ex.check_post_norm_block, S.PostNormBlock)
    accepted(
        capsys,
        ex.check_post_norm_block,
        post_norm(  # the attention called directly
            lambda m, x: m.norm2((h := m.norm1(x + m.attn(x, x, x)[0])) + m.mlp(h))
        ),
    )
    rejected(ex.check_post_norm_block, post_norm(stub), mistake="not attempted")
    said = rejected(
        ex.check_post_norm_block,
        post_norm(  # two fresh norms are identical:
            lambda m, x: m.norm1((h := m.norm1(x + m.attention(x))) + m.mlp(h))
        ),  # not here
        mistake="reused norm1",
    )
    assert "never norm2" in said
    rejected(
        ex.check_post_norm_block,
        post_norm(lambda m, x: m.norm1((h := m.norm2(x + m.attention(x))) + m.mlp(h))),
        mistake="swapped norm1 norm2",
    )
    rejected(ex.check_post_norm_block, S.PreNormBlock, mistake="pre-norm")
    rejected(
        ex.check_post_norm_block,
        post_norm(lambda m, x: m.norm2(m.norm1(x + m.attention(x)) + m.mlp(x))),
        mistake="mlp reads x",
    )
    rejected(
        ex.check_post_norm_block,
        post_norm(lambda m, x: m.norm2(x + m.mlp(m.norm1(x + m.attention(x))))),
        mistake="second sum x",
    )


def test_kept(capsys):
    accepted(capsys, ex.check_kept, S.kept)
    accepted(capsys, ex.check_kept, lambda x: ~(x < 0))  # written another way
    accepted(capsys, ex.check_kept, lambda x: torch.relu(x) == x)
    rejected(ex.check_kept, stub, mistake="not attempted")
    rejected(ex.check_kept, lambda x: x > 0, mistake="zero")
    rejected(ex.check_kept, lambda x: x < 0, mistake="negatives")
    rejected(ex.check_kept, lambda x: x <= 0, mistake="negatives")
    rejected(ex.check_kept, lambda x: torch.ones_like(x, dtype=torch.bool), mistake="all")
    rejected(ex.check_kept, lambda x: torch.zeros_like(x, dtype=torch.bool), mistake="none")
    said = rejected(ex.check_kept, torch.relu, mistake="not a mask")  # values, not a mask
    assert "boolean" in said
    rejected(ex.check_kept, lambda x: x > 0.5, mistake="wrong")


def test_a_zero_initialised_resnet20_keeps_every_input_of_its_blocks():
    share, same, n = _inputs_kept_in_a_network()
    assert share == 1.0 and (same, n) == (7, 9)


def test_scale_prediction(capsys):
    rejected(ex.run_scale_prediction, None, mistake="not attempted")
    accepted(capsys, ex.run_scale_prediction, S.SCALE_PREDICTION)
    rejected(ex.run_scale_prediction, "both", mistake="predicted both")
    rejected(ex.run_scale_prediction, "post-norm", mistake="predicted post-norm")


def test_every_check_and_run_is_tested():
    tested = Path(__file__).read_text(encoding="utf-8")
    for name in ex.__all__:
        if name.startswith(("check_", "run_")):
            assert f"ex.{name}," in tested, f"{name} has no test here"


# ---------------------------------------------------------------- answers of the wrong kind


class OtherNames(nn.Module):  # the right computation, with layers named its own way
    def __init__(self, in_planes, planes):
        super().__init__()
        self.c1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.c2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.c3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.n1, self.n2, self.n3 = (nn.BatchNorm2d(c) for c in (in_planes, planes, planes))

    def forward(self, x):
        out = self.c2(torch.relu(self.n2(self.c1(torch.relu(self.n1(x))))))
        return self.c3(torch.relu(self.n3(out))) + x


class RaisesInTrainMode(S.MyPreActBottleneck):
    def forward(self, x):
        if self.training:
            raise RuntimeError("only in eval mode")
        return super().forward(x)


class ReturnsATuple(S.MyPreActBottleneck):
    def forward(self, x):
        return (super().forward(x),)


class LazyBlock(S.MyPreActBottleneck):
    def __init__(self, in_planes, planes):
        super().__init__(in_planes, planes)
        self.conv1 = nn.LazyConv2d(planes, 1, bias=False)


META = torch.empty((), device="meta")

# (check, its arguments, the mistake it must name, words the one line must hold)
WRONG_KINDS = {
    "choices of an int": (ex.check_affine, (3,), "not a choice", "one of"),
    "choices of a dict": (ex.check_affine, ({"a": 1},), "not a choice", "set of"),
    "choices of a float": (ex.check_affine, (0.5,), "not a choice", "got 0.5"),
    "choice of an int": (ex.run_scale_prediction, (2,), "not a choice", "one of"),
    "a number too large": (ex.check_option_c, (10**400,), "too large", "about 10^400"),
    "a number of 5000 digits": (ex.check_option_c, (10**5000,), "too large", "about 10^5000"),
    "a meta tensor": (ex.check_option_c, (META,), "not a number", "meta device"),
    "a tensor of many": (ex.check_option_c, (torch.ones(3),), "not a number", "shape (3,)"),
    "a complex number": (ex.check_option_c, (1 + 2j,), "not a number", "(1+2j)"),
    "NaN": (ex.check_option_c, (float("nan"),), "not a number", "NaN"),
    "a meta tensor among four": (
        ex.check_label_smoothing,
        (0.85, META, 0.5, 2.8),
        "not a number",
        "other_class is a tensor on the meta device",
    ),
    "a function returning 10**400": (
        ex.check_cifar_params,
        (lambda depth: 10**depth,),
        "too large",
        "far beyond any answer",
    ),
    "a function returning a meta tensor": (
        ex.check_gradient_gain,
        (lambda lam, depth: META,),
        "not a number",
        "meta device",
    ),
    "a function returning a string": (
        ex.check_onecycle_cosine,
        (lambda step, total, warm: "peak",),
        "not a number",
        "'peak'",
    ),
    "a test loop returning a dict": (
        ex.check_test_loss,
        (lambda model, loader: {"loss": 1.0, "accuracy": 0.5},),
        "not a pair",
        "two numbers",
    ),
    "a test loop returning a string pair": (
        ex.check_test_loss,
        (lambda model, loader: ("low", "high"),),
        "not a number",
        "'low'",
    ),
    "a seed count as a tensor of many": (
        ex.check_seeds_needed,
        (lambda diff, sd: torch.ones(2),),
        "not a number",
        "shape (2,)",
    ),
    "a function returning an array": (
        ex.check_diagnose,
        (lambda shallow, deep: np.array(["fine", "fine"]),),
        "wrong",
        "wrong on",
    ),
    "a block whose layers have other names": (
        ex.check_preact_bottleneck,
        (OtherNames,),
        "layer names",
        "no layer named bn1, conv1, bn2, conv2, bn3, conv3 (it has c1, c2, c3, n1, n2, n3)",
    ),
    "a block that raises in train mode": (
        ex.check_preact_bottleneck,
        (RaisesInTrainMode,),
        "raised",
        "(train mode) raised RuntimeError: only in eval mode",
    ),
    "a block that returns a tuple": (
        ex.check_preact_bottleneck,
        (ReturnsATuple,),
        "not a tensor",
        "returns (tensor(",
    ),
    "a block with lazy layers": (
        ex.check_preact_bottleneck,
        (LazyBlock,),
        "parameters",
        "lazy layers (LazyConv2d)",
    ),
    "a probe returning a non-model": (
        ex.check_linear_probe,
        (lambda model, k: model.fc,),
        "head size",
        "no head named fc",
    ),
}


@pytest.mark.parametrize("case", WRONG_KINDS, ids=str)
def test_an_answer_of_the_wrong_kind_gets_one_line_that_names_it(case):
    """The probe's cases: a check answers every wrong answer with a NotYet of one line,
    never with a traceback of its own (TypeError, OverflowError, AttributeError, ...)."""
    check, args, mistake, words = WRONG_KINDS[case]
    with pytest.raises(NotYet) as e:
        check(*args)
    said = str(e.value)
    assert e.value.mistake == mistake, said
    assert words in said and "\n" not in said and len(said) < 300, said


def test_right_answers_of_other_kinds_are_accepted(capsys):
    """Numbers as numpy or one-element tensors, of any dtype, pass like floats."""
    accepted(capsys, ex.check_option_c, np.int64(S.OPTION_C_PARAMS))
    accepted(capsys, ex.check_option_c, torch.tensor([S.OPTION_C_PARAMS]))
    accepted(capsys, ex.check_option_c, np.array(S.OPTION_C_PARAMS))
    accepted(capsys, ex.check_affine, frozenset(S.AFFINE))
