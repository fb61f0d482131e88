import itertools

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as MobileNetV2Block

from resnet_lab.blocks import (
    BLOCKS,
    BasicBlock,
    Bottleneck,
    InvertedResidual,
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


@pytest.mark.parametrize(
    "in_planes,out_planes,stride,expand",
    [(24, 24, 1, 6), (16, 24, 2, 6), (32, 32, 1, 1), (32, 16, 1, 1), (8, 8, 2, 4)],
)
def test_inverted_residual_is_torchvisions_mobilenet_v2_block(
    in_planes, out_planes, stride, expand
):
    """Same layers in the same order (weights copied one to one), same output."""
    torch.manual_seed(0)
    ours = InvertedResidual(in_planes, out_planes, stride, expand=expand).eval()
    ref = MobileNetV2Block(in_planes, out_planes, stride, expand_ratio=expand).eval()
    for m in ref.modules():  # BN statistics and scales that are not 0 and 1: a misplaced BN shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
    theirs = ref.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in theirs.values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.values())))
    x = torch.randn(2, in_planes, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))
    assert ours.skip == ref.use_res_connect


def test_inverted_residual_shortcut_only_where_the_shape_is_kept():
    x = torch.randn(2, 16, 8, 8)
    for args, kw, adds_x in [
        ((16, 16, 1), {}, True),
        ((16, 16, 1), {"skip": False}, False),
        ((16, 16, 2), {}, False),
        ((16, 24, 1), {}, False),
    ]:
        block = InvertedResidual(*args, **kw).eval()
        nn.init.zeros_(block.bn3.weight)  # the branch now outputs bn3's bias: zero
        out = block(x)
        if adds_x:
            assert torch.equal(out, x)
        else:
            assert not out.any()


def test_inverted_residual_middle_is_wide_and_depthwise():
    block = InvertedResidual(16, 16, expand=6)
    assert block.depthwise.groups == block.depthwise.in_channels == 96
    assert block.depthwise.weight.shape == (96, 1, 3, 3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"in_planes": 0, "out_planes": 8}, "in_planes"),
        ({"in_planes": 8, "out_planes": 2.5}, "out_planes"),
        ({"in_planes": 8, "out_planes": 8, "expand": 0}, "expand"),
        ({"in_planes": 8, "out_planes": 8, "stride": 3}, "stride"),
    ],
)
def test_inverted_residual_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InvertedResidual(**kwargs)
