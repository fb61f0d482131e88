"""Chapter 6's exercises: a linear probe, what train mode changes in a frozen backbone, and a
prediction about a learning rate of zero."""

from __future__ import annotations

import torch
from torch import nn

from resnet_lab.config import TrainConfig
from resnet_lab.book.exercises.tools import (
    Measurement,
    NotYet,
    attempt,
    choice,
    choices,
    judge_prediction,
    passed,
)
from resnet_lab.finetune import freeze, replace_head, trainable_parts
from resnet_lab.models import resnet20
from resnet_lab.train import train


def check_linear_probe(linear_probe) -> None:
    """Chapter 6, exercise 1: a new head, and nothing else trains."""
    for k in (3, 5):
        with torch.random.fork_rng(devices=[]):
            model = resnet20()
        stem = model.conv1.weight.detach().clone()
        probe = attempt(linear_probe, model, k, what=f"linear_probe(model, {k})")
        if not isinstance(probe, nn.Module):
            raise NotYet(f"linear_probe returned {probe!r}: return the model", "no model")
        left_in_eval = not probe.training
        with torch.no_grad():
            out = attempt(probe.eval(), torch.zeros(2, 3, 32, 32), what="the returned model")
        if not isinstance(out, torch.Tensor) or out.shape != (2, k):
            shape = tuple(getattr(out, "shape", ()))
            raise NotYet(f"the model gives outputs of shape {shape} for {k} classes", "head size")
        if not torch.equal(getattr(probe, "conv1", model.conv1).weight, stem):
            raise NotYet(
                "the backbone's weights changed: a new network loses what the "
                "pretrained one learned; replace its head only",
                "new network",
            )
        names = {n for n, p in probe.named_parameters() if p.requires_grad}
        if not names & {"fc.weight", "fc.bias"}:
            raise NotYet(
                "nothing in the head trains: the new head is frozen too (freeze "
                "the backbone, not the whole model)",
                "head frozen",
            )
        if names != {"fc.weight", "fc.bias"}:
            parts = [p for p, on in trainable_parts(probe).items() if on and p != "head"]
            hint = (
                " (model.eval() freezes nothing: it switches BN and dropout, while "
                "requires_grad decides what trains)"
                if left_in_eval
                else ""
            )
            raise NotYet(f"the backbone still trains: {', '.join(parts)}{hint}", "backbone trains")
    # with only the head trainable, the trainer's set_train_mode keeps every BN in eval mode
    passed("a fresh head trains, the backbone and its BN statistics stay as they were")


FROZEN_OPTIONS = {
    "a": "the convolution weights",
    "b": "BN's scale γ and shift β",
    "c": "BN's running mean and variance",
    "d": "nothing",
}


def _changed_in_train_mode() -> set[str]:
    """Run a frozen ResNet-20 forward once in plain train mode; which kinds of tensor change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = freeze(resnet20(), "backbone").train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            model(torch.randn(8, 3, 32, 32))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    bns = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    kinds = set()
    for key in changed:
        owner, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":  # a counter, beside the statistics
            continue
        if owner in bns:
            kinds.add("c" if leaf in ("running_mean", "running_var") else "b")
        else:
            kinds.add("a")
    return kinds or {"d"}


def check_frozen_train_mode(answer) -> None:
    """Chapter 6, exercise 2: what a forward pass in train mode changes in a frozen backbone."""
    picked = choices(answer, tuple(FROZEN_OPTIONS), "answer")
    truth = _changed_in_train_mode()
    if picked == truth:
        passed("only the running statistics move: the reason frozen BNs stay in eval mode")
        return
    if picked & {"a", "b"} - truth:
        raise NotYet(
            "a frozen parameter gets no gradient, and a forward pass alone changes no parameter",
            "parameters",
        )
    if "d" in picked and "c" in truth:
        raise NotYet(
            "in train mode every forward pass updates BN's running mean and "
            "variance, gradients or not",
            "nothing",
        )
    raise NotYet(
        "not quite: run a frozen network forward in train mode and compare its "
        "state_dict before and after",
        "wrong",
    )


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
    """Chapter 6, predict then run: with the backbone's learning rate at 0 (not frozen), what
    in the backbone does one epoch of training change?"""
    guess = choice(prediction, ZERO_LR_CHOICES)
    judge_prediction(guess, measure_zero_lr(data))
