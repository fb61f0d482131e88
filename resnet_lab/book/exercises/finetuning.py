"""Chapter 8's exercises: a linear probe in plain PyTorch that a plain training loop cannot
disturb, learning rates that fall with depth, and a prediction about a learning rate of zero.

The first two are checked on two networks: one of resnet_lab's CIFAR ResNets and torchvision's
``resnet18``, whose classes differ and whose stages number three and four, so that an answer
works on any ResNet with an ``fc`` head and ``layer1`` ... ``layerN``, as plain PyTorch does."""

from __future__ import annotations

import contextlib
import copy
import functools
import re

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    attempt,
    choice,
    judge_prediction,
    passed,
)
from resnet_lab.config import TrainConfig
from resnet_lab.finetune import replace_head
from resnet_lab.models import resnet20
from resnet_lab.train import train


@functools.cache
def _built() -> tuple[nn.Module, nn.Module]:
    import torchvision  # 1.2 s to import: only when a check runs

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ours = resnet20()
        theirs = torchvision.models.resnet18(num_classes=10)
        for net in (ours, theirs):  # running statistics of their own, as a trained net has
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    return ours, theirs


def _networks() -> list[tuple[str, nn.Module]]:
    """(what, network) for a check, fresh copies with weights of the check's own (the reader's
    random state untouched): ours, then torchvision's."""
    ours, theirs = _built()
    return [("resnet20", copy.deepcopy(ours)), ("torchvision's resnet18", copy.deepcopy(theirs))]


@contextlib.contextmanager
def _one_thread():
    """The checks' networks are tiny: one thread runs them fastest, and on a busy machine
    several threads wait on each other at every operation. The reader's setting comes back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _inputs(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(8, 3, 32, 32, generator=g) + 0.5  # not what the statistics expect
    return x, torch.randint(0, k, (8,), generator=g)


def _features(model: nn.Module, x: torch.Tensor, training: bool) -> torch.Tensor:
    """What ``model``'s head receives on ``x``: in eval mode, or after a plain ``train()``."""
    seen = []
    handle = model.fc.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        model.train(training)
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max())


def _plain_loop(probe: nn.Module, k: int, steps: int = 3) -> None:
    """A training loop as a reader writes it: ``model.train()`` and nothing else."""
    trainable = [p for p in probe.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    for step in range(steps):
        x, y = _inputs(k, seed=step + 1)
        probe.train()
        loss = F.cross_entropy(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


# ---------------------------------------------------------------------------- 8.1 a linear probe


def _probe_of(linear_probe, what: str, model: nn.Module, k: int) -> nn.Module:
    try:
        probe = attempt(linear_probe, model, k, what=f"linear_probe({what}, {k})")
    except NotYet as e:
        if e.mistake == "raised" and "resnet_lab" in str(e):
            raise NotYet(
                f"{e}. The probe must work on any ResNet with an fc head: write it in plain "
                "PyTorch (model.fc = nn.Linear(...), requires_grad_)",
                "not plain",
            ) from None
        raise
    if not isinstance(probe, nn.Module):
        raise NotYet(f"linear_probe returned {probe!r}: return the model", "no model")
    return probe


def _check_head(probe: nn.Module, k: int, x: torch.Tensor) -> None:
    if not isinstance(getattr(probe, "fc", None), nn.Module):
        raise NotYet("the model has no head named fc: put the new one at model.fc", "head size")
    try:
        with torch.no_grad():
            out = probe.eval()(x)
    except RuntimeError as e:
        raise NotYet(
            f"the new head does not fit the backbone ({str(e).splitlines()[0]}): its input "
            "size is the old head's, model.fc.in_features",
            "head size",
        ) from None
    if out.shape != (len(x), k):
        raise NotYet(f"the head gives {out.shape[-1]} outputs for {k} classes", "head size")


def _check_trainable(probe: nn.Module, left_in_eval: bool) -> None:
    names = {n for n, p in probe.named_parameters() if p.requires_grad}
    if not names or not all(p.requires_grad for p in probe.fc.parameters()):
        raise NotYet(
            "the new head does not train: it is frozen too (freeze the backbone, "
            "not the whole model)",
            "head frozen",
        )
    parts = sorted({n.split(".")[0] for n in names if not n.startswith("fc.")})
    if parts:
        hint = (
            " (model.eval() freezes nothing: it switches BN and dropout, while "
            "requires_grad decides what trains)"
            if left_in_eval
            else ""
        )
        raise NotYet(f"the backbone still trains: {', '.join(parts)}{hint}", "backbone trains")


def _moved(before: dict, probe: nn.Module) -> str:
    after = probe.state_dict()
    names = [n for n, t in before.items() if n in after and not torch.equal(t, after[n])]
    return next((n for n in names if "running" in n), "its running statistics")


def check_linear_probe(linear_probe) -> None:
    """Chapter 8, exercise 1: a new head, the only thing that trains in a plain loop, on our
    ResNet-20 and on torchvision's ResNet-18; the backbone's BN statistics stay put under
    ``model.train()``, and in train mode it computes what it computes in eval mode."""
    with _one_thread():
        for (what, model), k in zip(_networks(), (3, 5)):
            _check_probe(linear_probe, what, model, k)
    passed(
        "the new head trains, and a plain model.train() loop leaves the backbone, its BN "
        "statistics included, as it was: on three stages and on four"
    )


def _check_probe(linear_probe, what: str, model: nn.Module, k: int) -> None:
    x, _ = _inputs(k, seed=0)
    want = _features(copy.deepcopy(model), x, training=False)
    probe = _probe_of(linear_probe, what, model, k)
    left_in_eval = not probe.training
    _check_head(probe, k, x)
    if not _same(_features(probe, x, training=False), want):
        raise NotYet(
            f"the backbone of {what} computes something else than the network you "
            "were given: a new network loses what the pretrained one learned; replace "
            "its head only",
            "new network",
        )
    _check_trainable(probe, left_in_eval)
    before = {n: t.clone() for n, t in probe.state_dict().items()}
    _plain_loop(probe, k)
    if not _same(_features(probe, x, training=False), want):
        raise NotYet(
            f"after a plain loop (model.train(), forward, backward, step) {_moved(before, probe)}"
            f" of {what} moved: requires_grad stops the optimiser, not batch norm's running"
            " averages; the frozen BN layers must stay in eval mode through model.train()",
            "BN statistics move",
        )
    if not _same(_features(probe, x, training=True), want):
        raise NotYet(
            "in train mode the backbone normalises each batch with its own statistics, "
            "not the pretrained running ones, so it computes other features in training than "
            "in eval mode: keep the frozen BN layers in eval mode in training too",
            "batch statistics",
        )


# ---------------------------------------------------------------------------- 8.2 rates by depth

_STAGE = re.compile(r"layer(\d+)$")
_UNSET = 123_456.0  # the optimiser's default lr in the check: a group without its own shows it


def _part(name: str) -> str:
    top = name.split(".")[0]
    return top if top == "fc" or _STAGE.match(top) else "stem"


def part_rates(model: nn.Module, lr: float, factor: float) -> dict[str, float]:
    """``{part: rate}`` of discriminative fine-tuning: ``fc`` at ``lr``, the last stage at
    ``lr * factor``, each stage below at ``factor`` times the one above, the stem (everything
    outside the stages and the head) below ``layer1``."""
    stages = sorted(int(m.group(1)) for n, _ in model.named_children() if (m := _STAGE.match(n)))
    n = stages[-1]
    rates = {"fc": lr, **{f"layer{i}": lr * factor ** (n + 1 - i) for i in stages}}
    return rates | {"stem": lr * factor ** (n + 1)}


def _given_rates(groups, model: nn.Module) -> dict[str, float]:
    """``{parameter name: lr}`` of the reader's ``groups``, as SGD reads them."""
    try:
        opt = torch.optim.SGD(groups, lr=_UNSET)
    except ValueError as e:
        if "more than one" in str(e):
            raise NotYet(
                "a parameter is in two groups: each is in exactly one", "two groups"
            ) from None
        raise NotYet(f"these are not parameter groups ({e})", "not groups") from None
    except TypeError as e:
        raise NotYet(
            f"these are not parameter groups ({e}): return a list of dicts, each with "
            "'params' and 'lr'",
            "not groups",
        ) from None
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {}
    for g in opt.param_groups:
        if g["lr"] == _UNSET:
            raise NotYet("a group has no 'lr' of its own: give every group its rate", "no lr")
        if any(id(p) not in names for p in g["params"]):
            raise NotYet("a group holds a tensor that is not the model's parameter", "not groups")
        rates |= {names[id(p)]: g["lr"] for p in g["params"]}
    return rates


def _near(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= 1e-9 * abs(b)


def _judge_rates(rates: dict[str, float], model: nn.Module, lr: float, factor: float, what):
    want = part_rates(model, lr, factor)
    missing = [n for n, _ in model.named_parameters() if n not in rates]
    if missing:
        part = _part(missing[0])
        raise NotYet(
            f"{len(missing)} parameters of {what} are in no group, the first in {part}"
            + (f": {what} has {len(want) - 2} stages" if part == f"layer{len(want) - 2}" else ""),
            "missing",
        )
    got: dict[str, set] = {}
    for name, rate in rates.items():
        got.setdefault(_part(name), set()).add(rate)
    split = [part for part, seen in got.items() if len(seen) > 1]
    if split:
        raise NotYet(f"the parameters of {split[0]} train at different rates", "split part")
    g = {part: next(iter(seen)) for part, seen in got.items()}
    wrong = [part for part in want if not _near(g[part], want[part])]
    last = f"layer{len(want) - 2}"
    if not wrong:
        return
    if _near(g["fc"], want["stem"]) and _near(g["stem"], lr):
        raise NotYet(
            "the rates run the wrong way: the head learns from nothing and gets the most, "
            "the layers nearest the input the least",
            "reversed",
        )
    if _near(g[last], lr):
        raise NotYet(
            f"{last} of {what} trains at the head's rate: one factor too few", "off by one"
        )
    if _near(g["stem"], g["layer1"]):
        raise NotYet("the stem trains at layer1's rate: it sits below layer1", "stem")
    raise NotYet(f"{wrong[0]} of {what} trains at {g[wrong[0]]:.3g}: not its rate", "wrong rate")


def check_layerwise_groups(layerwise_groups) -> None:
    """Chapter 8, exercise 2: SGD parameter groups whose rates fall by ``factor`` per part, from
    the head down to the stem, on a ResNet of three stages and one of four."""
    (ours, three), (theirs, four) = _networks()
    for what, model, lr, factor in ((ours, three, 0.1, 0.5), (theirs, four, 0.04, 0.3)):
        groups = attempt(
            layerwise_groups, model, lr, factor, what=f"layerwise_groups({what}, {lr}, {factor})"
        )
        try:
            _judge_rates(_given_rates(groups, model), model, lr, factor, what)
        except NotYet as e:
            if model is three:
                raise
            raise NotYet(
                f"right on {ours}'s three stages, not on four: {e}; count the stages of the "
                "model you are given",
                "three stages",
            ) from None
    passed("each part learns a factor slower than the part above it, on three stages and four")


# ---------------------------------------------------------------------------- 8.3 a zero rate

ZERO_LR_CHOICES = ("nothing", "statistics", "weights")


def measure_zero_lr(data) -> Measurement:
    """Train a ResNet-20 for one epoch on ``data`` with the backbone's learning rate at 0, not
    frozen; what changed in the backbone: "weights", only BN "statistics", or "nothing"."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = replace_head(resnet20(), len(data.classes))
        before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
        cfg = TrainConfig(
            epochs=1, batch_size=32, lr=0.1, device="cpu", lr_scales={"backbone": 0.0}
        )
        train(model, data, cfg, progress=False)
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    stats = [
        k for k in changed if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    print(
        f"backbone tensors changed: {len(changed)} of {len(before)}, of them "
        f"{len(stats)} BN running statistics and counters"
    )
    truth = "weights" if len(changed) > len(stats) else "statistics" if stats else "nothing"
    return Measurement(
        truth,
        "A rate of 0 stops the updates, but the parameters still require gradients, so "
        "their BNs run in train mode.",
        "a zero learning rate is not freezing: the BN statistics still drift",
    )


def run_zero_lr_prediction(prediction, data) -> None:
    """Chapter 8, predict then run: with the backbone's learning rate at 0 (not frozen), what
    in the backbone does one epoch of training change?"""
    guess = choice(prediction, ZERO_LR_CHOICES)
    judge_prediction(guess, measure_zero_lr(data))
