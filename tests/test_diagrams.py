"""The book's diagrams: each builds without a warning, and what each states is true of the modules
it says it is drawn from."""

import math
import warnings

import matplotlib
import pytest
import torch
import torchvision

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from resnet_lab.blocks import BasicBlock, PreActBlock
from resnet_lab.book import diagrams
from resnet_lab.book.analysis import forward_steps, imagenet_costs
from resnet_lab.models import cifar_resnet, count_params, imagenet_resnet

FIGURES = [
    "plain_vs_residual_block",
    "post_vs_pre_activation",
    "shortcut_options",
    "basic_vs_bottleneck",
    "resnet_layout",
    "imagenet_stages",
    "residual_paths",
    "transformer_blocks",
]


def texts(fig) -> list[str]:
    """Every piece of text on the figure: titles, boxes, table cells, ticks, captions."""
    cells = [c.get_text() for ax in fig.axes for t in ax.tables for c in t.get_celld().values()]
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)] + [c.get_text() for c in cells]


@pytest.fixture(scope="module")
def figures():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = {name: getattr(diagrams, name)() for name in FIGURES}
    yield figs
    for fig in figs.values():
        plt.close(fig)


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_builds_with_a_caption(figures, name):
    fig = figures[name]
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
    assert fig.texts and fig.texts[-1].get_text()  # the caption line


def box_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_text() != "identity"]


def drawn(block, x) -> list[str]:
    return [diagrams._describe(s)[0] for s in forward_steps(block, x)] + ["output"]


def test_plain_vs_residual_boxes_are_the_blocks_forward_pass(figures):
    # the caption says "drawn from BasicBlock": its boxes must be the traced steps
    plain, residual = figures["plain_vs_residual_block"].axes
    x = torch.zeros(1, 64, 8, 8)
    assert box_texts(plain) == drawn(BasicBlock(64, 64, skip=False), x)
    assert box_texts(residual) == drawn(BasicBlock(64, 64), x)
    assert "+" in box_texts(residual) and "+" not in box_texts(plain)
    assert box_texts(residual)[1:4] == ["conv1: 3x3 conv, 64", "bn1: BN", "relu: ReLU"]
    caption = figures["plain_vs_residual_block"].texts[-1].get_text()
    assert caption.startswith("Drawn from resnet_lab.blocks.BasicBlock(64, 64)")


def test_post_vs_pre_activation(figures):
    post, pre = figures["post_vs_pre_activation"].axes
    x = torch.zeros(1, 64, 8, 8)
    assert box_texts(post) == drawn(BasicBlock(64, 64), x)
    assert box_texts(pre) == drawn(PreActBlock(64, 64), x)
    assert box_texts(pre)[1:3] == ["bn1: BN", "relu: ReLU"]  # BN and ReLU before the conv
    assert post.get_title().endswith("after the sum: ReLU")
    assert pre.get_title().endswith("after the sum: nothing")


def test_transformer_blocks(figures):
    post, pre = figures["transformer_blocks"].axes
    assert post.get_title().endswith("after the last sum: LayerNorm")
    assert pre.get_title().endswith("after the last sum: nothing")
    boxes = box_texts(pre)
    assert boxes.index("norm1: LayerNorm") < boxes.index("self_attn: attention, 4 heads")
    assert not any("dropout" in b for b in box_texts(post) + boxes)  # left out, as captioned
    # two shortcuts in each block
    assert sum(t.get_text() == "identity" for t in post.texts) == 2


@pytest.fixture(scope="module")
def table1():
    return {depth: imagenet_costs(depth) for depth in (18, 34, 50)}


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_table1_counts_are_the_built_models(table1, depth):
    costs = table1[depth]
    ours = imagenet_resnet(depth)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert costs["params"] == count_params(ours) == count_params(theirs)
    # the paper's FLOPs (multiply-adds) are ours, in its layout, cut to one decimal
    paper = diagrams.PAPER_GFLOPS[depth]
    assert math.floor(costs["paper_layout_macs"] / 1e8) / 10 == paper
    assert [s["output"][1:] for s in costs["stages"]] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
    assert [s["blocks"] for s in costs["stages"]] == blocks
    if depth == 50:  # the stride on the 3x3 (v1.5) costs about 0.23 x 10^9 more
        assert 0.2e9 < costs["macs"] - costs["paper_layout_macs"] < 0.25e9


def test_table1_figure_states_the_computed_counts(figures, table1):
    cells = texts(figures["imagenet_stages"])
    for depth, costs in table1.items():
        assert f"{costs['params'] / 1e6:.1f}M" in cells
        assert f"{costs['macs'] / 1e9:.2f} x 10^9" in cells
        assert f"{diagrams.PAPER_GFLOPS[depth]} x 10^9" in cells
    assert "[1x1, 64 | 3x3, 64 | 1x1, 256] x 3" in cells
    assert "[3x3, 128 | 3x3, 128] x 4" in cells  # ResNet-34's conv3_x


def test_residual_paths_figure(figures):
    left, right = figures["residual_paths"].axes
    n = len(cifar_resnet(110).blocks())
    assert n == 54
    assert right.get_title() == f"ResNet-110: {n} blocks, 2^{n} = {2**n:.2e} paths"
    heights = [p.get_height() for p in right.patches]
    assert heights == [math.comb(n, k) for k in range(n + 1)] and sum(heights) == 2**n
    labels = [t.get_text() for t in left.get_yticklabels()]
    assert len(labels) == 8 and labels[0] == "x" and labels[-1] == "x → f1 → f2 → f3"
