import itertools

import pytest
import torch
from torch import nn

from resnet_lab.blocks import (
    BLOCKS,
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PreActBlock,
    make_shortcut,
    zero_init_residual_,
)


@pytest.mark.parametrize(
    "kind,stride,shortcut,skip",
    list(
        itertools.product(["basic", "bottleneck", "preact"], [1, 2], ["A", "B", "C"], [True, False])
    ),
)
def test_block_shapes(kind, stride, shortcut, skip):
    block_cls = BLOCKS[kind]
    in_planes, planes = 16, 32
    block = block_cls(in_planes, planes, stride, skip=skip, shortcut=shortcut)
    x = torch.randn(2, in_planes, 8, 8)
    out = block(x)
    assert out.shape == (2, planes * block_cls.expansion, 8 // stride, 8 // stride)
    if not skip:
        assert block.downsample is None


@pytest.mark.parametrize("kind", ["basic", "preact"])
def test_same_shape_block_keeps_shape(kind):
    block = BLOCKS[kind](16, 16, 1, shortcut="A")
    assert block.downsample is None  # a bare identity: nothing to learn on the shortcut
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)


def test_shortcut_options_parameters():
    assert make_shortcut(16, 16, 1, "A") is None
    assert make_shortcut(16, 16, 1, "B") is None
    assert isinstance(make_shortcut(16, 32, 2, "A"), PadShortcut)
    proj = make_shortcut(16, 32, 2, "B")
    assert (
        isinstance(proj[0], nn.Conv2d)
        and proj[0].kernel_size == (1, 1)
        and proj[0].stride == (2, 2)
    )
    assert isinstance(make_shortcut(16, 16, 1, "C"), nn.Sequential)
    # option A has no parameters at all
    assert sum(p.numel() for p in PadShortcut(16, 32, 2).parameters()) == 0


def test_pad_shortcut_subsamples_and_pads_evenly():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    out = PadShortcut(4, 8, 2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, :2], torch.zeros(2, 2, 2, 2))
    assert torch.equal(out[:, 6:], torch.zeros(2, 2, 2, 2))
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])


def test_zero_initialised_basic_block_is_relu_of_identity():
    torch.manual_seed(0)
    block = BasicBlock(8, 8)
    zero_init_residual_(block)
    x = torch.randn(4, 8, 6, 6)
    for mode in (block.train, block.eval):
        mode()
        assert torch.equal(block(x), torch.relu(x))


def test_zero_initialised_preact_and_bottleneck_blocks_are_identity_like():
    x = torch.randn(4, 64, 6, 6)
    pre = PreActBlock(64, 64)
    zero_init_residual_(pre)
    assert torch.equal(pre(x), x)  # nothing after the sum: exactly the identity
    bott = Bottleneck(64, 16)
    zero_init_residual_(bott)
    assert torch.equal(bott(x), torch.relu(x))


def test_plain_block_does_not_add_input():
    torch.manual_seed(0)
    res, plain = BasicBlock(8, 8, skip=True), BasicBlock(8, 8, skip=False)
    plain.load_state_dict(res.state_dict())
    zero_init_residual_(res)
    zero_init_residual_(plain)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(plain(x), torch.zeros_like(x))  # F(x) = 0 and no x added back
    assert torch.equal(res(x), torch.relu(x))


def test_bad_shortcut_and_shrinking_pad_raise():
    with pytest.raises(ValueError, match="shortcut must be one of"):
        BasicBlock(16, 32, 2, shortcut="D")
    with pytest.raises(ValueError, match="use shortcut='B'"):
        PadShortcut(32, 16, 2)
