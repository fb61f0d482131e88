"""MobileNetV2's inverted residual (chapter 9), against torchvision's."""

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as MobileNetV2Block

from resnet_lab.book.mobilenet import InvertedResidual


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
