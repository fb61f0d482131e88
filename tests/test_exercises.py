"""Every exercise's published solution passes its check; plausible wrong answers (at least two
per exercise) are each rejected with the mistake they make; the stubs the chapters show are
"not attempted"; and the checks judge by behaviour, whatever the reader's seed or names."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book import exercises as ex
from resnet_lab.book.article import ArticleNet
from resnet_lab.book.exercises import NotAttempted, NotYet
from resnet_lab.book.exercises import solutions as S
from resnet_lab.book.exercises.background import DIAGNOSE_CASES, DIAGNOSE_MISTAKES, _rule
from resnet_lab.book.exercises.deep_networks import STREAM_MISTAKES, measure_plain110
from resnet_lab.book.exercises.finetuning import measure_zero_lr
from resnet_lab.book.exercises.full_network import (
    CIFAR_DEPTHS,
    CIFAR_MISTAKES,
    _cifar_count,
    measure_test_loop,
)
from resnet_lab.book.exercises.residual_block import OPTION_C_MISTAKES, _option_c_count
from resnet_lab.book.exercises.residual_math import TWO_BLOCK_MISTAKES
from resnet_lab.book.exercises.tools import judge_prediction
from resnet_lab.book.exercises.training import (
    LESION_CHOICES,
    ONECYCLE_MISTAKES,
    _onecycle_steps,
    _trainer_onecycle,
    measure_shortcut_lesion,
)
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


def test_error_signs(capsys):
    accepted(capsys, ex.check_error_signs, S.OVERFITTING, S.DEGRADATION)
    rejected(ex.check_error_signs, None, None, mistake="not attempted")
    rejected(ex.check_error_signs, "train", "test", mistake="swapped")
    rejected(ex.check_error_signs, "test", "test", mistake="same error")
    rejected(ex.check_error_signs, "training", "test", mistake="not a choice")


def _runs(curves):
    return [
        History(epochs=[{"epoch": i, "seconds": 1.0, "train_acc": a} for i, a in enumerate(c, 1)])
        for c in curves
    ]


def test_gap_prediction_reads_the_records(capsys):
    growing = {"plain20": _runs([[0.2, 0.5, 0.7]] * 2), "plain56": _runs([[0.15, 0.3, 0.35]] * 2)}
    rejected(ex.run_gap_prediction, None, growing, mistake="not attempted")
    accepted(capsys, ex.run_gap_prediction, S.GAP_PREDICTION, growing)
    rejected(ex.run_gap_prediction, "shrinks", growing, mistake="predicted shrinks")
    rejected(ex.run_gap_prediction, "stays", growing, mistake="predicted stays")
    # the verdict is the records', not typed: runs that catch up make "shrinks" right
    catching_up = {"plain20": _runs([[0.4, 0.6, 0.7]]), "plain56": _runs([[0.2, 0.5, 0.69]])}
    accepted(capsys, ex.run_gap_prediction, "shrinks", catching_up)
    rejected(ex.run_gap_prediction, "grows", catching_up, mistake="predicted grows")
    rejected(ex.run_gap_prediction, "grows", {}, mistake="no records")


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


# ---------------------------------------------------------------------------- chapter 3


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


# ---------------------------------------------------------------------------- chapter 4


def pair(forward):
    return with_forward(S.ArticlePair, forward)


def test_article_pair(capsys):
    accepted(capsys, ex.check_article_pair, S.ArticlePair)
    accepted(capsys, ex.check_article_pair, pair(lambda m, x: x + m.conv2(F.relu(m.conv1(x)))))
    rejected(ex.check_article_pair, pair(lambda m, x: m.conv2(m.conv1(x))), mistake="not attempted")
    rejected(ex.check_article_pair, pair(lambda m, x: m.conv2(m.conv1(x)) + x), mistake="no relu")
    rejected(
        ex.check_article_pair,
        pair(lambda m, x: torch.relu(m.conv2(torch.relu(m.conv1(x))) + x)),
        mistake="relu after sum",
    )
    rejected(
        ex.check_article_pair,
        pair(lambda m, x: m.conv2(torch.relu(m.conv1(x)) + x)),
        mistake="x inside",
    )
    rejected(
        ex.check_article_pair,
        pair(lambda m, x: m.conv1(torch.relu(m.conv1(x))) + x),
        mistake="reused conv1",
    )


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
    rejected(ex.check_cifar_params, lambda d: 19_400_000, mistake="wrong")


def test_affine(capsys):
    accepted(capsys, ex.check_affine, S.AFFINE)
    accepted(capsys, ex.check_affine, ["A", "c", "b"])  # any collection, any case
    rejected(ex.check_affine, None, mistake="not attempted")
    rejected(ex.check_affine, {"a", "c"}, mistake="option b")
    rejected(ex.check_affine, {"a", "b", "c", "d"}, mistake="option d")
    rejected(ex.check_affine, {"a", "b"}, mistake="option c")
    rejected(ex.check_affine, {"e"}, mistake="not a choice")


def test_test_loop_prediction(capsys, tiny_data):
    model, tiny_data = ArticleNet(), tiny_data.subset(10, 10, seed=0)
    rejected(ex.run_test_loop_prediction, None, model, tiny_data, mistake="not attempted")
    accepted(capsys, ex.run_test_loop_prediction, S.TEST_LOOP_PREDICTION, model, tiny_data)
    rejected(
        ex.run_test_loop_prediction, "over 100", model, tiny_data, mistake="predicted over 100"
    )
    rejected(
        ex.run_test_loop_prediction,
        "at most 100",
        model,
        tiny_data,
        mistake="predicted at most 100",
    )
    # batches of one broadcast: the loop then prints a number, and "error" is the mistake
    measured = measure_test_loop(model, tiny_data, 1)
    assert measured.truth != "error"
    rejected(judge_prediction, "error", measured, mistake="predicted error")


# ---------------------------------------------------------------------------- chapter 5


def test_onecycle(capsys):
    accepted(capsys, ex.check_onecycle, S.onecycle)
    rejected(ex.check_onecycle, stub, mistake="not attempted")
    # the literal reading of "climbs from zero" is named, not merely rejected
    said = rejected(
        ex.check_onecycle,
        lambda s, t, w: s / w if s < w else (t - s) / (t - w),
        mistake="from zero",
    )
    assert "1/warm" in said
    rejected(
        ex.check_onecycle, lambda s, t, w: 1.0 if s < w else (t - s) / (t - w), mistake="no warm-up"
    )
    rejected(
        ex.check_onecycle,
        lambda s, t, w: (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (t - w))),
        mistake="cosine",
    )
    rejected(
        ex.check_onecycle,
        lambda s, t, w: (s + 1) / w if s < w else (t - s) / t,
        mistake="falls over total",
    )


def test_onecycle_mistakes_differ_from_the_trainer():
    want = _onecycle_steps(_trainer_onecycle)
    assert want[0] > 0  # step 0 already learns: 1/warm of the peak
    for fn, key, _ in ONECYCLE_MISTAKES:
        assert _onecycle_steps(fn) != want, key


def test_label_smoothing(capsys):
    accepted(capsys, ex.check_label_smoothing, S.TRUE_CLASS, S.OTHER_CLASS, S.LOWEST_LOSS)
    accepted(capsys, ex.check_label_smoothing, 0.91, 0.01, 0.5004)  # rounded is right too
    rejected(ex.check_label_smoothing, None, 0.01, 0.5, mistake="not attempted")
    rejected(ex.check_label_smoothing, 0.9, 0.1 / 9, 0.5, mistake="true class no share")
    rejected(ex.check_label_smoothing, 0.91, 0.1 / 9, 0.5, mistake="others only")
    rejected(ex.check_label_smoothing, 0.91, 0.01, 0.0, mistake="zero")
    rejected(ex.check_label_smoothing, 0.91, 0.01, math.log(10), mistake="uniform")


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


# ---------------------------------------------------------------------------- chapter 6


def probe_unfrozen(model, k):
    return replace_head(model, k)


def probe_all_frozen(model, k):
    replace_head(model, k)
    return freeze(model, "all")


def probe_by_eval(model, k):
    return replace_head(model, k).eval()


def test_linear_probe(capsys):
    accepted(capsys, ex.check_linear_probe, S.linear_probe)
    accepted(capsys, ex.check_linear_probe, lambda m, k: replace_head(freeze(m), k))
    rejected(ex.check_linear_probe, stub, mistake="not attempted")
    rejected(ex.check_linear_probe, probe_unfrozen, mistake="backbone trains")
    rejected(ex.check_linear_probe, probe_all_frozen, mistake="head frozen")
    said = rejected(ex.check_linear_probe, probe_by_eval, mistake="backbone trains")
    assert "eval() freezes nothing" in said
    rejected(
        ex.check_linear_probe, lambda m, k: freeze(resnet20(num_classes=k)), mistake="new network"
    )
    rejected(ex.check_linear_probe, lambda m, k: S.linear_probe(m, 3), mistake="head size")
    rejected(ex.check_linear_probe, lambda m, k: None, mistake="no model")


def test_frozen_train_mode(capsys):
    accepted(capsys, ex.check_frozen_train_mode, S.FROZEN_TRAIN_MODE)
    accepted(capsys, ex.check_frozen_train_mode, "C")
    rejected(ex.check_frozen_train_mode, None, mistake="not attempted")
    rejected(ex.check_frozen_train_mode, {"d"}, mistake="nothing")
    rejected(ex.check_frozen_train_mode, {"b", "c"}, mistake="parameters")
    rejected(ex.check_frozen_train_mode, {"a"}, mistake="parameters")


def test_zero_lr_prediction(capsys, tiny_data):
    small = tiny_data.subset(32, 10, seed=0)
    rejected(ex.run_zero_lr_prediction, None, small, mistake="not attempted")
    accepted(capsys, ex.run_zero_lr_prediction, S.ZERO_LR_PREDICTION, small)
    measured = measure_zero_lr(small)
    rejected(judge_prediction, "nothing", measured, mistake="predicted nothing")
    rejected(judge_prediction, "weights", measured, mistake="predicted weights")


# ---------------------------------------------------------------------------- chapter 7


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


def test_identity_blocks(capsys):
    accepted(capsys, ex.check_identity_blocks, S.IDENTITY_BLOCKS)
    rejected(ex.check_identity_blocks, None, mistake="not attempted")
    rejected(ex.check_identity_blocks, {"preact"}, mistake="pre-norm")
    rejected(ex.check_identity_blocks, {"basic", "preact", "pre-norm"}, mistake="basic")
    rejected(ex.check_identity_blocks, {"bottleneck", "preact", "pre-norm"}, mistake="bottleneck")
    rejected(ex.check_identity_blocks, {"preact", "pre-norm", "post-norm"}, mistake="post-norm")


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
