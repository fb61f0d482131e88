"""Chapter 5, exercise 4: a CIFAR ResNet of depth 6n+2 built from the reader's own block.

The check judges the whole network by what it computes. It builds the reader's ``MyResNet`` at
two depths, wants the paper's parameter count and a (B, 10) output, then copies the weights of
the package's :func:`~resnet_lab.models.cifar_resnet` into it, layer by layer in the order each
network runs its layers (names never matter), and wants the same outputs. A wrong network is
named by what differs: where the resolution halves (traced through the convolutions), or which
of the known mistakes (a missing ReLU, a missing shortcut ...) computes what the reader's does,
with the same weights, in :func:`cifar_forward`. Option A's zero channels may go anywhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book.exercises.tools import (
    NotAttempted,
    NotYet,
    attempt,
    build,
    passed,
    randomize_,
    same_tensor,
)
from resnet_lab.models import cifar_resnet, count_params

_RIGHT = dict(
    pad="even",
    stem_relu=True,
    mid_relu=True,
    end_relu=True,
    branch_relu=False,
    shortcut=True,
    change_shortcut=True,
    subsample="stride",
)
# option A: the paper does not say where the zero channels go; each placement is right
PADS = {"even": "split before and after", "after": "after the input's", "before": "before them"}
RESNET_MISTAKES = [
    ({"stem_relu": False}, "stem relu", "no ReLU after the stem's convolution and BN"),
    ({"mid_relu": False}, "mid relu", "no ReLU between a block's two convolutions"),
    ({"end_relu": False}, "end relu", "no ReLU after a block's sum"),
    (
        {"end_relu": False, "branch_relu": True},
        "branch relu",
        "the ReLU acts on the branch before the sum; the paper's acts after it",
    ),
    (
        {"change_shortcut": False},
        "no shortcut at width change",
        "where a stage changes width your block adds no shortcut: the statement asks for "
        "option A, which carries x there too, subsampled and zero-padded",
    ),
    ({"shortcut": False}, "no shortcut", "your blocks add no shortcut: that is the plain twin"),
    (
        {"subsample": "average"},
        "averaged shortcut",
        "your shortcut averages 2x2 pixels; option A takes every second pixel (a stride of 2)",
    ),
]


def _option_a(x: torch.Tensor, stride: int, width: int, how: dict) -> torch.Tensor:
    x = x[:, :, ::stride, ::stride] if how["subsample"] == "stride" else F.avg_pool2d(x, stride)
    extra = width - x.shape[1]
    before = {"even": extra // 2, "after": 0, "before": extra}[how["pad"]]
    return F.pad(x, (0, 0, 0, 0, before, extra - before))


def _block(b: nn.Module, x: torch.Tensor, how: dict) -> torch.Tensor:
    out = b.bn1(b.conv1(x))
    out = F.relu(out) if how["mid_relu"] else out
    out = b.bn2(b.conv2(out))
    out = F.relu(out) if how["branch_relu"] else out
    changes = b.downsample is not None
    if how["shortcut"] and (how["change_shortcut"] or not changes):
        out = out + (_option_a(x, b.conv1.stride[0], out.shape[1], how) if changes else x)
    return F.relu(out) if how["end_relu"] else out


def cifar_forward(net: nn.Module, x: torch.Tensor, **mistake) -> torch.Tensor:
    """``net(x)`` for a ``cifar_resnet`` (option A), written out, or with a ``mistake``
    (``_RIGHT``'s keys); ``pad`` says where option A's zero channels go."""
    how = {**_RIGHT, **mistake}
    x = net.bn1(net.conv1(x))
    x = F.relu(x) if how["stem_relu"] else x
    for b in net.blocks():
        x = _block(b, x, how)
    return net.fc(torch.flatten(net.avgpool(x), 1))


def _owners(net: nn.Module) -> list[nn.Module]:
    """The modules that own parameters (or BN statistics) directly."""
    return [
        m
        for m in net.modules()
        if next(m.parameters(recurse=False), None) is not None
        or isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def _run_order(net: nn.Module, x: torch.Tensor, what: str) -> tuple[torch.Tensor, list]:
    """``net(x)``, and the owners of ``net`` in the order that pass used them, each with the
    spatial size of what it returned."""
    used: list[tuple[nn.Module, tuple]] = []
    hooks = [
        m.register_forward_hook(lambda m, _i, out: used.append((m, _size(out))))
        for m in _owners(net)
    ]
    try:
        with torch.no_grad():
            out = attempt(net, x, what=what)
    finally:
        for h in hooks:
            h.remove()
    return out, used


def _size(out) -> tuple:
    return tuple(out.shape[2:]) if isinstance(out, torch.Tensor) else ()


def _tensors(m: nn.Module) -> list[torch.Tensor]:
    return [*m.parameters(recurse=False), *m.buffers(recurse=False)]


def _load_by_order(ran: list, ref: list, depth: int) -> None:
    """Copy the parameters and buffers of the layers in ``ref`` into those in ``ran``, layer by
    layer in the order each network ran them, by shape, not by name."""
    same = len(ran) == len(ref) and all(
        [t.shape for t in _tensors(a)] == [t.shape for t in _tensors(b)]
        for (a, _), (b, _) in zip(ran, ref)
    )
    if not same:
        raise NotYet(
            f"MyResNet({depth})'s layers, in the order it runs them, do not line up with the "
            "paper's: a stem conv and BN, two convs with a BN each per block, the linear head; "
            "each layer used once",
            "layers",
        )
    with torch.no_grad():
        for (a, _), (b, _) in zip(ran, ref):
            for t, s in zip(_tensors(a), _tensors(b)):
                t.copy_(s)


def _judge_count(net: nn.Module, depth: int) -> None:
    got = count_params(net)
    with torch.random.fork_rng(devices=[]):
        want = count_params(cifar_resnet(depth))
    if got == want:
        return
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    layers = len(convs) + sum(isinstance(m, nn.Linear) for m in net.modules())
    widths = sorted({c.out_channels for c in convs if c.kernel_size == (3, 3)})
    if any(c.bias is not None for c in convs):
        raise NotYet(
            "your convolutions have biases: each is followed by a BN, whose shift makes a bias "
            "redundant, so the paper's have none",
            "conv bias",
        )
    if any(c.kernel_size == (1, 1) for c in convs):
        raise NotYet(
            "a 1x1 projection on a shortcut: the statement asks for option A, zero-padding, "
            "which has no parameters",
            "projection",
        )
    if widths != [16, 32, 64]:
        raise NotYet(
            f"your 3x3 convolutions have {widths} filters; the paper's stages have 16, 32 and 64",
            "widths",
        )
    if layers != depth:
        raise NotYet(
            f"MyResNet({depth}) has {layers} weight layers (convolutions and linear layers): "
            f"depth {depth} means {depth}",
            "depth",
        )
    paper = " (the paper's 0.27M: 269,722)" if depth == 20 else ""
    raise NotYet(
        f"MyResNet({depth}) has {got:,} parameters, not ResNet-{depth}'s{paper}: compare its "
        "layers and their widths with the paper's description",
        "count",
    )


def _judge_stride(ran: list, ref: list) -> None:
    """Name where the resolution halves, when it halves elsewhere than in the paper."""
    mine, paper = ([size for m, size in run if isinstance(m, nn.Conv2d)] for run in (ran, ref))
    if mine == paper:
        return
    differ = [i for i, (a, b) in enumerate(zip(mine, paper)) if a != b]
    if mine[differ[0]] < paper[differ[0]]:
        message = "your network halves the resolution too early"
    elif not any(i + 1 in differ for i in differ):  # each time one convolution late
        message = "your block halves the resolution in its second convolution, not its first"
    else:
        message = "your stride sits on the wrong block: a stage halves in its first block"
    raise NotYet(f"{message} (the stages work on 32x32, 16x16 and 8x8 maps)", "stride")


def _judge_outputs(net: nn.Module, ref: nn.Module, x: torch.Tensor, depth: int) -> str:
    """The placement of option A's zeros that makes ``net`` compute ``ref``; else a NotYet."""
    with torch.no_grad():
        got = net(x)
        for pad in PADS:
            if same_tensor(got, cifar_forward(ref, x, pad=pad)):
                return pad
        for mistake, key, message in RESNET_MISTAKES:
            for pad in PADS:
                if same_tensor(got, cifar_forward(ref, x, pad=pad, **mistake)):
                    raise NotYet(message, key)
    raise NotYet(
        f"with the package's weights MyResNet({depth}) computes something else than "
        f"cifar_resnet({depth}): compare your block and network with the paper's description",
        "wrong",
    )


def check_cifar_resnet(cls) -> None:
    """Chapter 5, exercise 4: ``cls(depth)``, the CIFAR ResNet of depth 6n+2 built from the
    reader's own block with option-A shortcuts. At depths 20 and 8: the paper's parameter
    count, a (B, 10) output, and, with the weights of ``cifar_resnet(depth)`` copied in by the
    order the layers run (names may differ), the same outputs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    for depth in DEPTHS:
        net = _build_resnet(cls, depth).eval()
        out, ran = _run_order(net, x, f"MyResNet({depth})")
        if not isinstance(out, torch.Tensor) or out.shape != (2, 10):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NotYet(
                f"MyResNet({depth}) maps a (2, 3, 32, 32) batch to {shape}; a classifier of "
                "the 10 classes gives (2, 10)",
                "output shape",
            )
        _judge_count(net, depth)
        with torch.random.fork_rng(devices=[]):
            ref = randomize_(cifar_resnet(depth), g).eval()
        _, trace = _run_order(ref, x, "cifar_resnet")
        _load_by_order(ran, trace, depth)
        _judge_stride(ran, trace)
        pad = _judge_outputs(net, ref, x, depth)
    passed(
        "a CIFAR ResNet from your own block: at depths 20 and 8 the paper's parameter counts, "
        f"and with the package's weights its outputs (option A, the zero channels {PADS[pad]})"
    )


DEPTHS = (20, 8)  # the paper's ResNet-20, and n = 1: n is read from the depth


def _build_resnet(cls, depth: int) -> nn.Module:
    try:
        net = build(cls, depth, what="MyResNet")
    except NotYet as e:
        if "NotImplementedError" in str(e):
            raise NotAttempted(
                "MyResNet (or MyBlock) still raises NotImplementedError: write them, then run "
                "this cell"
            ) from None
        raise
    borrowed = {type(m).__name__ for m in net.modules() if _from_package(m)}
    if borrowed:
        raise NotYet(
            f"MyResNet uses resnet_lab's {', '.join(sorted(borrowed))}: build it from your own "
            "block",
            "package block",
        )
    return net


def _from_package(m: nn.Module) -> bool:
    return type(m).__module__ in ("resnet_lab.blocks", "resnet_lab.models")
