"""Diagrams drawn from code: the blocks, shortcuts and layouts that the chapters explain.

Each function returns a matplotlib figure. Numbers on the diagrams (shapes, parameter counts,
multiply-adds, path counts) are computed from the real modules of :mod:`resnet_lab`, not typed
in. A block's boxes are the calls of one forward pass of it, in order
(:func:`~resnet_lab.book.analysis.forward_steps`); only :func:`shortcut_options` has boxes typed by
hand, and its caption claims only its counts as computed.
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torch import nn

from resnet_lab.blocks import BasicBlock, Bottleneck, PreActBlock
from resnet_lab.book.analysis import (
    Step,
    count_macs,
    forward_steps,
    imagenet_costs,
    path_lengths,
    shape_trace,
    unrolled_paths,
)
from resnet_lab.book.style import SMALL, TICKS, WIDTH, book_figure
from resnet_lab.book.viz import caption
from resnet_lab.models import cifar_resnet, count_params

# He et al. 2015, Table 1: "FLOPs" of the ImageNet ResNets (multiply-adds), x 10^9
PAPER_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}

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
    ax.text(x, y, text, ha="center", va="center", fontsize=TICKS)


def _arrow(ax, start, end, **kw):
    style = dict(arrowstyle="-|>", mutation_scale=10, lw=1.1, color="0.25")
    style.update(kw)
    ax.add_patch(FancyArrowPatch(start, end, **style))


def _column(ax, x, layers, *, top=0.0, step=0.85):
    """Boxes top to bottom joined by arrows. Returns the y of each box."""
    ys = [top - i * step for i in range(len(layers))]
    for (text, kind), y in zip(layers, ys):
        _box(ax, x, y, text, kind)
    for y0, y1 in itertools.pairwise(ys):
        _arrow(ax, (x, y0 - 0.27), (x, y1 + 0.27))
    return ys


def _describe(step: Step) -> tuple[str, str]:
    """A box's text and colour for one step that :func:`forward_steps` recorded."""
    m = step.module
    if m is None:
        return {"input": ("x", "io"), "add": ("+", "add")}.get(
            step.name, (f"F.{step.name}", "relu")
        )
    if isinstance(m, nn.Conv2d):
        k, s = m.kernel_size[0], m.stride[0]
        text, kind = f"{k}x{k} conv, {m.out_channels}" + (f", stride {s}" if s > 1 else ""), "conv"
    elif isinstance(m, nn.Linear):
        text, kind = f"linear {m.in_features} -> {m.out_features}", "conv"
    elif isinstance(m, nn.MultiheadAttention):
        text, kind = f"attention, {m.num_heads} heads", "conv"
    elif isinstance(m, nn.BatchNorm2d):
        text, kind = "BN", "bn"
    elif isinstance(m, nn.LayerNorm):
        text, kind = "LayerNorm", "bn"
    elif isinstance(m, (nn.ReLU, nn.GELU)):
        text, kind = type(m).__name__, "relu"
    else:
        text, kind = type(m).__name__, "pool"
    return f"{step.name}: {text}", kind


def _without(steps: list[Step], kind: type[nn.Module]) -> list[Step]:
    """``steps`` with every call of a ``kind`` module left out; what read it reads its input."""
    kept: list[Step] = []
    where: dict[int, int] = {}  # old index -> new index
    for i, s in enumerate(steps):
        inputs = tuple(dict.fromkeys(where[j] for j in s.inputs))
        if isinstance(s.module, kind):
            where[i] = inputs[0]
            continue
        where[i] = len(kept)
        kept.append(s._replace(inputs=inputs))
    return kept


def _trace_column(ax, steps: list[Step], *, step=0.85, w=2.9) -> None:
    """One box per step, top to bottom in the order they ran, then an "output" box. A straight
    arrow where a step reads the one above it; a red arc where it reads an earlier one (a
    shortcut)."""
    ys = [-i * step for i in range(len(steps) + 1)]
    for s, y in zip(steps, ys):
        _box(ax, 0, y, *_describe(s), w=w)
    _box(ax, 0, ys[-1], "output", "io", w=w)
    for i, s in enumerate([*steps[1:], Step("output", None, (len(steps) - 1,))], start=1):
        for j in s.inputs:
            if j == i - 1:
                _arrow(ax, (0, ys[j] - 0.27), (0, ys[i] + 0.27))
                continue
            right = w / 2 + 0.05
            arc = dict(connectionstyle="arc3,rad=-0.35", color="#c00000", lw=1.6)
            _arrow(ax, (right, ys[j]), (right, ys[i]), **arc)
            mid = (ys[j] + ys[i]) / 2
            ax.text(
                right + 0.8,
                mid,
                "identity",
                color="#c00000",
                fontsize=TICKS,
                rotation=90,
                ha="center",
                va="center",
            )


def _traced(blocks: dict[str, nn.Module], inputs: dict[str, torch.Tensor]) -> tuple:
    """A figure of one column per block, each drawn from one forward pass of the block on its
    input (dropout left out). Returns the figure, its axes and the steps drawn."""
    traces = {k: _without(forward_steps(b, inputs[k]), nn.Dropout) for k, b in blocks.items()}
    fig, axes = _canvas(len(traces), max(len(t) for t in traces.values()) + 1)
    for ax, t in zip(axes, traces.values()):
        ax.set_xlim(-1.6, 2.6)
        _trace_column(ax, t)
    return fig, axes, traces


def _same_input(blocks: dict[str, nn.Module], shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape) for k in blocks}


def _canvas(ncols: int, rows: int, width: float = WIDTH):
    """``ncols`` empty panels across ``width`` inches (the column), tall enough for ``rows``
    boxes each."""
    height = 0.5 * rows + 0.9
    fig, axes = plt.subplots(1, ncols, figsize=(width, height))
    # room above for two-line titles, none below: the caption goes there
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.6 / height)
    axes = [axes] if ncols == 1 else list(axes)
    for ax in axes:
        ax.set_xlim(-1.5, 3.0)
        ax.set_ylim(-0.85 * (rows - 1) - 0.4, 0.45)
        ax.axis("off")
    return fig, axes


@book_figure
def plain_vs_residual_block():
    """A plain block beside the residual block of He et al. (2015, Fig. 2), each drawn from one
    forward pass of :class:`~resnet_lab.blocks.BasicBlock` (64 channels)."""
    blocks = {"plain": BasicBlock(64, 64, skip=False), "residual": BasicBlock(64, 64)}
    fig, (a, b), _ = _traced(blocks, _same_input(blocks, (1, 64, 8, 8)))
    a.set_title("plain block: learns H(x)")
    b.set_title("residual block: learns F(x),\noutputs F(x) + x")
    caption(
        fig,
        "Drawn from resnet_lab.blocks.BasicBlock(64, 64) with skip=False (left) and skip=True "
        "(right): its layers in the order its forward pass calls them "
        "(resnet_lab.book.analysis.forward_steps).",
    )
    return fig


@book_figure
def post_vs_pre_activation():
    """The original (post-activation) block beside the pre-activation block of He et al. (2016,
    Fig. 1 and 4(e)), each drawn from one forward pass of :class:`~resnet_lab.blocks.BasicBlock`
    and :class:`~resnet_lab.blocks.PreActBlock` (64 channels); the title says what each block
    does after its sum."""
    blocks = {
        "post-activation (He et al. 2015)": BasicBlock(64, 64),
        "pre-activation (He et al. 2016)": PreActBlock(64, 64),
    }
    fig, axes, traces = _traced(blocks, _same_input(blocks, (1, 64, 8, 8)))
    for ax, (k, t) in zip(axes, traces.items()):
        after = [_describe(s)[0].split(": ")[-1] for s in t[_last_add(t) + 1 :]]
        ax.set_title(f"{k}\nafter the sum: {', '.join(after) or 'nothing'}")
    caption(
        fig,
        "Drawn from resnet_lab.blocks.BasicBlock(64, 64) (left) and PreActBlock(64, 64) "
        "(right): their layers in the order their forward passes call them "
        "(resnet_lab.book.analysis.forward_steps).",
    )
    return fig


def _last_add(steps: list[Step]) -> int:
    return max(i for i, s in enumerate(steps) if s.name == "add")


@book_figure
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
        ax.set_xlim(-1.3, 1.3)  # no arcs on the right: the boxes take the panel's width
        ax.set_title(f"option {o}: {params[o]} parameters\n(inside a stage: {inside})")
    caption(
        fig,
        "Shortcut of the first block of stage 2 of a CIFAR ResNet (16 -> 32 channels, stride 2); "
        "parameter counts computed from resnet_lab.blocks.make_shortcut.",
    )
    return fig


@book_figure
def basic_vs_bottleneck():
    """The paper's Fig. 5: a basic block on 64 channels beside a bottleneck block on 256
    channels, drawn from their forward passes, with their parameters and multiply-adds on a
    56x56 map (computed)."""
    blocks = {"basic": BasicBlock(64, 64), "bottleneck": Bottleneck(256, 64)}
    inputs = {"basic": torch.zeros(1, 64, 56, 56), "bottleneck": torch.zeros(1, 256, 56, 56)}
    fig, axes, _ = _traced(blocks, inputs)
    for ax, (k, b) in zip(axes, blocks.items()):
        p, m = count_params(b), count_macs(b, inputs[k])
        ax.set_title(f"{k} block\n{p:,} parameters, {m / 1e6:.0f}M multiply-adds")
    caption(
        fig,
        "He et al. 2015, Fig. 5, drawn from resnet_lab.blocks.BasicBlock(64, 64) and "
        "Bottleneck(256, 64) (their layers in forward order); counts computed on a 56x56 input "
        "(parameters include BN; multiply-adds count the convolutions; "
        "the identity shortcut costs neither).",
    )
    return fig


@book_figure
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
    ax.set_title(f"ResNet-{depth}: {6 * n + 2} weight layers, {count_params(model):,} parameters")
    caption(
        fig,
        f"Shapes traced from resnet_lab.models.cifar_resnet({depth}) on a (1, 3, 32, 32) input "
        "(channels x height x width); stages 2 and 3 halve the resolution in their first block.",
    )
    return fig


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape[1:])


@book_figure
def imagenet_stages(depths: tuple[int, ...] = (18, 34, 50)):
    """The paper's Table 1 for the ImageNet ResNets of ``depths``, computed from
    :func:`~resnet_lab.models.imagenet_resnet` by :func:`~resnet_lab.book.analysis.imagenet_costs`:
    output sizes, blocks per stage, parameters, multiply-adds, and the paper's figure."""
    costs = {d: imagenet_costs(d) for d in depths}
    first = costs[depths[0]]
    k, c, st = first["conv1"]
    pk, ps = first["maxpool"]
    rows = [
        ["conv1", _size(first["conv1_output"]), *[f"{k}x{k}, {c}, stride {st}"] * len(depths)],
        ["max pool", _size(first["maxpool_output"]), *[f"{pk}x{pk}, stride {ps}"] * len(depths)],
    ]
    for i, stage in enumerate(first["stages"]):
        cells = []
        for d in depths:
            s = costs[d]["stages"][i]
            convs = " | ".join(f"{kk}x{kk}, {cc}" for kk, cc in s["convs"])
            cells.append(f"[{convs}] x {s['blocks']}")
        rows.append([f"conv{i + 2}_x ({stage['stage']})", _size(stage["output"]), *cells])
    n = first["classes"]
    rows += [
        ["pool, fc", "1x1", *[f"average pool, {n}-d fc"] * len(depths)],
        ["parameters", "", *[f"{costs[d]['params'] / 1e6:.1f}M" for d in depths]],
        ["multiply-adds", "", *[f"{costs[d]['macs'] / 1e9:.2f} x 10^9" for d in depths]],
        [
            "same, paper's layout",
            "",
            *[f"{costs[d]['paper_layout_macs'] / 1e9:.2f} x 10^9" for d in depths],
        ],
        ["paper's FLOPs (Table 1)", "", *[_paper(d) for d in depths]],
    ]
    fig, ax = plt.subplots(figsize=(WIDTH + 1, 0.25 * len(rows) + 0.5))
    ax.axis("off")
    table = ax.table(
        cellText=rows,
        colLabels=["layer", "output size", *[f"{d}-layer" for d in depths]],
        cellLoc="center",
        bbox=[0, 0, 1, 1],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(SMALL)
    table.auto_set_column_width(list(range(len(depths) + 2)))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9)
    ax.set_title("ImageNet ResNets, stage by stage (He et al. 2015, Table 1)")
    caption(
        fig,
        "Computed from resnet_lab.models.imagenet_resnet on one 224x224 image: sizes traced, "
        "parameters by count_params, multiply-adds by count_macs. Our bottlenecks stride their "
        "3x3 (torchvision's ResNet v1.5); the paper's layout strides the first 1x1, "
        "and its FLOPs are those multiply-adds cut to one decimal.",
    )
    return fig


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape[1:])


def _paper(depth: int) -> str:
    return f"{PAPER_GFLOPS[depth]} x 10^9" if depth in PAPER_GFLOPS else "-"


@book_figure
def residual_paths(drawn: int = 3, depth: int = 110):
    """The unrolled view of a residual stack (Veit et al. 2016, Fig. 1 and 6a): the 2^n paths
    through ``drawn`` blocks, enumerated, and how many of the paths through the blocks of the
    CIFAR ResNet-``depth`` pass through k residual branches (binomial, computed)."""
    paths = unrolled_paths(drawn)
    n = len(cifar_resnet(depth).blocks())
    counts = path_lengths(n)
    fig, (a, b) = plt.subplots(1, 2, figsize=(WIDTH, 3.9), gridspec_kw={"width_ratios": [1, 1.5]})
    used = [[i in p for i in range(drawn)] for p in paths]
    a.imshow(used, cmap="Blues", vmin=0, vmax=1.5, aspect="auto")
    a.set_xticks(range(drawn), [f"f{i + 1}" for i in range(drawn)])
    a.set_yticks(range(len(paths)), [_path_text(p) for p in paths], fontsize=TICKS)
    a.set_title(
        f"{drawn} blocks: 2^{drawn} = {len(paths)} paths\n(shaded: the residual branch taken)"
    )
    b.bar(range(n + 1), counts, color="#4a7ab5")
    b.set(xlabel="path length: residual branches passed", ylabel="number of paths")
    b.set_title(f"ResNet-{depth}: {n} blocks, 2^{n} = {2**n:.2e} paths")
    b.grid(alpha=0.3)
    fig.tight_layout()
    caption(
        fig,
        "Left: the paths enumerated (resnet_lab.book.analysis.unrolled_paths); each passes through "
        "the shaded branches and skips the others (with linear branches the stack's output is "
        f"exactly the sum over its paths). Right: C({n}, k) paths of length k (path_lengths), "
        f"{n} = the residual blocks of resnet_lab.models.cifar_resnet({depth}); removing one "
        "block removes the half of the paths that pass through it.",
    )
    return fig


def _path_text(path: tuple[int, ...]) -> str:
    return " → ".join(["x", *(f"f{i + 1}" for i in path)])


@book_figure
def transformer_blocks(dim: int = 64, heads: int = 4):
    """The post-norm block of the original transformer beside the pre-norm block, drawn from
    one forward pass of PyTorch's :class:`torch.nn.TransformerEncoderLayer` with
    ``norm_first=False`` and ``True``; the title says what each does after its last sum."""
    layers = {
        "post-norm (norm_first=False)": nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, batch_first=True, norm_first=False
        ),
        "pre-norm (norm_first=True)": nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, batch_first=True, norm_first=True
        ),
    }
    fig, axes, traces = _traced(layers, _same_input(layers, (1, 5, dim)))
    for ax, (k, t) in zip(axes, traces.items()):
        after = [_describe(s)[0].split(": ")[-1] for s in t[_last_add(t) + 1 :]]
        ax.set_title(f"{k}\nafter the last sum: {', '.join(after) or 'nothing'}")
    caption(
        fig,
        f"Drawn from torch.nn.TransformerEncoderLayer({dim}, {heads}, {4 * dim}) with "
        "norm_first=False (left) and True (right): the calls of one forward pass in order "
        "(resnet_lab.book.analysis.forward_steps), its dropout layers left out.",
    )
    return fig
