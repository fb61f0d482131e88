"""Diagrams drawn from code: the blocks, shortcuts and layouts that the chapters explain.

Each function returns a matplotlib figure. Numbers on the diagrams (shapes, parameter counts)
are computed from the real modules of :mod:`resnet_lab`, not typed in.
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from resnet_lab.analysis import count_macs, shape_trace
from resnet_lab.blocks import BasicBlock, Bottleneck
from resnet_lab.models import cifar_resnet, count_params
from resnet_lab.viz import caption

BOX = {
    "conv": "#cfe2f3",
    "bn": "#fff2cc",
    "relu": "#d9ead3",
    "add": "#f4cccc",
    "io": "#eeeeee",
    "pool": "#ead1dc",
}


def _box(ax, x, y, text, kind, w=2.3, h=0.5):
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=BOX[kind], ec="0.3", lw=1
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, **kw):
    style = dict(arrowstyle="-|>", mutation_scale=10, lw=1.1, color="0.25")
    style.update(kw)
    ax.add_patch(FancyArrowPatch(start, end, **style))


def _column(ax, x, layers, *, top=0.0, step=0.85, skip_to=None, skip_label="identity x"):
    """Boxes top to bottom joined by arrows; ``skip_to``: index of the (+) box that the input
    (box 0) also feeds, drawn as a curved arrow on the right. Returns the y of each box."""
    ys = [top - i * step for i in range(len(layers))]
    for (text, kind), y in zip(layers, ys):
        _box(ax, x, y, text, kind)
    for y0, y1 in itertools.pairwise(ys):
        _arrow(ax, (x, y0 - 0.27), (x, y1 + 0.27))
    if skip_to is not None:
        _arrow(
            ax,
            (x + 1.17, ys[0]),
            (x + 1.17, ys[skip_to]),
            connectionstyle="arc3,rad=-0.35",
            color="#c00000",
            lw=1.6,
        )
        ax.text(
            x + 1.95,
            (ys[0] + ys[skip_to]) / 2,
            skip_label,
            color="#c00000",
            fontsize=8.5,
            ha="center",
            rotation=90,
            va="center",
        )
    return ys


def _canvas(ncols: int, rows: int, width: float = 3.6):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 0.5 * rows + 0.9))
    axes = [axes] if ncols == 1 else list(axes)
    for ax in axes:
        ax.set_xlim(-1.5, 3.0)
        ax.set_ylim(-0.85 * (rows - 1) - 0.4, 0.45)
        ax.axis("off")
    return fig, axes


def plain_vs_residual_block():
    """A plain block beside the residual block of He et al. (2015, Fig. 2)."""
    body = [
        ("x", "io"),
        ("3x3 conv", "conv"),
        ("BN", "bn"),
        ("ReLU", "relu"),
        ("3x3 conv", "conv"),
        ("BN", "bn"),
    ]
    fig, (a, b) = _canvas(2, 8)
    _column(a, 0, [*body, ("ReLU", "relu"), ("H(x)", "io")])
    a.set_title("plain block: learns H(x)", fontsize=10)
    _column(b, 0, [*body, ("+", "add"), ("ReLU", "relu")], skip_to=6)
    b.set_title("residual block: learns F(x), outputs F(x) + x", fontsize=10)
    caption(
        fig, "Drawn from resnet_lab.blocks.BasicBlock with skip=False (left) and skip=True (right)."
    )
    return fig


def shortcut_options():
    """The three shortcuts of He et al. (2015: A and B in §3.3, C in §4.1) for a block that halves
    the resolution and doubles the channels, with their parameter counts (16 -> 32 channels,
    computed)."""
    params = {o: count_params(BasicBlock(16, 32, 2, shortcut=o).downsample) for o in "ABC"}
    same = {o: BasicBlock(16, 16, 1, shortcut=o).downsample for o in "ABC"}
    fig, axes = _canvas(3, 4)
    texts = {
        "A": [
            ("x: 16 x 32 x 32", "io"),
            ("keep every 2nd pixel", "pool"),
            ("pad 8 + 8 zero channels", "pool"),
            ("32 x 16 x 16", "io"),
        ],
        "B": [
            ("x: 16 x 32 x 32", "io"),
            ("1x1 conv, stride 2", "conv"),
            ("BN", "bn"),
            ("32 x 16 x 16", "io"),
        ],
        "C": [
            ("x: 16 x 32 x 32", "io"),
            ("1x1 conv, stride 2", "conv"),
            ("BN", "bn"),
            ("32 x 16 x 16", "io"),
        ],
    }
    for ax, o in zip(axes, "ABC"):
        _column(ax, 0, texts[o])
        inside = "identity" if same[o] is None else "1x1 conv + BN"
        ax.set_title(
            f"option {o}: {params[o]} parameters\n(inside a stage: {inside})", fontsize=9.5
        )
    caption(
        fig,
        "Shortcut of the first block of stage 2 of a CIFAR ResNet (16 -> 32 channels, stride 2); "
        "parameter counts computed from resnet_lab.blocks.make_shortcut.",
    )
    return fig


def basic_vs_bottleneck():
    """The paper's Fig. 5: a basic block on 64 channels beside a bottleneck block on 256
    channels, with their parameters and multiply-adds on a 56x56 map (computed)."""
    basic, bottle = BasicBlock(64, 64), Bottleneck(256, 64)
    cost = {
        k: (count_params(m), count_macs(m, torch.zeros(1, c, 56, 56)))
        for k, m, c in (("basic", basic, 64), ("bottleneck", bottle, 256))
    }
    fig, (a, b) = _canvas(2, 9)
    _column(
        a,
        0,
        [
            ("x: 64-d", "io"),
            ("3x3 conv, 64", "conv"),
            ("BN, ReLU", "bn"),
            ("3x3 conv, 64", "conv"),
            ("BN", "bn"),
            ("+", "add"),
            ("ReLU", "relu"),
        ],
        skip_to=5,
    )
    _column(
        b,
        0,
        [
            ("x: 256-d", "io"),
            ("1x1 conv, 64", "conv"),
            ("BN, ReLU", "bn"),
            ("3x3 conv, 64", "conv"),
            ("BN, ReLU", "bn"),
            ("1x1 conv, 256", "conv"),
            ("BN", "bn"),
            ("+", "add"),
            ("ReLU", "relu"),
        ],
        skip_to=7,
    )
    for ax, k in ((a, "basic"), (b, "bottleneck")):
        p, m = cost[k]
        ax.set_title(f"{k} block\n{p:,} parameters, {m / 1e6:.0f}M multiply-adds", fontsize=9.5)
    caption(
        fig,
        "He et al. 2015, Fig. 5, redrawn; counts computed from resnet_lab.blocks on a 56x56 input "
        "(parameters include BN; multiply-adds count the convolutions; "
        "the identity shortcut costs neither).",
    )
    return fig


def resnet_layout(depth: int = 20):
    """The CIFAR ResNet-``depth`` as stages, with the output shape of each (traced)."""
    model = cifar_resnet(depth)
    shapes = shape_trace(model, depth=1)
    n = (depth - 2) // 6
    rows = [("image: 3 x 32 x 32", "io"), (f"3x3 conv, 16 -> {_shape(shapes['conv1'])}", "conv")]
    for i, w in enumerate((16, 32, 64), start=1):
        rows.append((f"stage {i}: {n} blocks of 3x3, {w}\n-> {_shape(shapes[f'layer{i}'])}", "add"))
    rows += [
        (f"global average pool -> {_shape(shapes['avgpool'])}", "pool"),
        (f"linear -> {_shape(shapes['fc'])} class scores", "conv"),
    ]
    fig, (ax,) = _canvas(1, len(rows), width=5.2)
    ax.set_xlim(-2.0, 2.0)
    for i, (text, kind) in enumerate(rows):
        y = -0.95 * i
        _box(ax, 0, y, text, kind, w=3.4, h=0.62)
        if i:
            _arrow(ax, (0, y + 0.95 - 0.33), (0, y + 0.33))
    ax.set_ylim(-0.95 * len(rows) + 0.4, 0.6)
    ax.set_title(
        f"ResNet-{depth}: {6 * n + 2} weight layers, {count_params(model):,} parameters",
        fontsize=10,
    )
    caption(
        fig,
        f"Shapes traced from resnet_lab.models.cifar_resnet({depth}) on a (1, 3, 32, 32) input "
        "(channels x height x width); stages 2 and 3 halve the resolution in their first block.",
    )
    return fig


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape[1:])
