"""The article's network as written, and its repairs (chapter 4)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.article import ArticleNet, ArticleNetFixed
from resnet_lab.models import build_model, count_params


def test_article_net_as_written_fails_and_fixed_works():
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    net = ArticleNet()
    assert (
        count_params(net) == 293_520
    )  # eight biased 3x3 convs, 3->16->16->32->32->64->64->128->128
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [
        (c.in_channels, c.out_channels, c.stride, c.padding, c.bias is not None) for c in convs
    ] == [
        (i, o, (1, 1), (1, 1), True)
        for i, o in zip((3, 16, 16, 32, 32, 64, 64, 128), (16, 16, 32, 32, 64, 64, 128, 128))
    ]
    out = net(x)
    assert out.shape == (2, 128, 32, 32)  # a feature map, not class scores
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.Linear)) for m in net.modules())
    with pytest.raises(RuntimeError, match="spatial targets"):
        F.cross_entropy(out, y)
    for kw in ({"nonlinear": False, "skip": False}, {"skip": False}, {}):
        fixed = ArticleNetFixed(**kw)
        assert fixed(x).shape == (2, 10)
        F.cross_entropy(fixed(x), y).backward()
    assert count_params(ArticleNetFixed(skip=False)) < count_params(
        ArticleNetFixed()
    )  # + 1x1 projections
    with pytest.raises(ValueError, match="skip=True needs nonlinear=True"):
        ArticleNetFixed(nonlinear=False)


def test_article_net_is_linear():
    # without activations the 8 convs compose to one affine map: f(a+b) - f(b) == f(a) - f(0)
    torch.manual_seed(0)
    net = ArticleNet().double()
    a, b = (
        torch.randn(1, 3, 32, 32, dtype=torch.double),
        torch.randn(1, 3, 32, 32, dtype=torch.double),
    )
    zero = torch.zeros_like(a)
    with torch.no_grad():
        torch.testing.assert_close(net(a + b) - net(b), net(a) - net(zero))


def test_article_networks_build_by_name_with_their_state_dict_keys():
    # checkpoints of these networks name their layers so: the move to article.py keeps them
    assert list(build_model("article").state_dict())[:2] == ["conv1.weight", "conv1.bias"]
    fixed = build_model("article_fixed", skip=False)
    assert fixed.name == "article_fixed (plain)"
    assert fixed.build_spec == {"name": "article_fixed", "kwargs": {"skip": False}}
    keys = list(ArticleNetFixed().state_dict())
    assert keys[:2] == ["features.0.weight", "features.1.weight"]
    assert "features.6.downsample.0.weight" in keys and keys[-2:] == ["fc.weight", "fc.bias"]
