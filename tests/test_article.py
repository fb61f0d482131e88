"""The article's network as written, and its repairs (chapter 5)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.book.article import ArticleNet, ArticleNetFixed
from resnet_lab.lab.names import build_model
from resnet_lab.models import count_params


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


@pytest.mark.parametrize("seed", range(3))
def test_article_net_is_one_convolution_inside_and_none_at_the_borders(seed):
    # chapter 5 (errata F7): the eight layers are one affine map, a 17x17 convolution away from
    # the borders; within 7 pixels of them each layer's zero padding makes it position-dependent
    torch.manual_seed(seed)
    net = ArticleNet().double()
    with torch.no_grad():
        f0 = net(torch.zeros(1, 3, 32, 32, dtype=torch.double))
        pulse = torch.zeros(4, 3, 32, 32, dtype=torch.double)
        pulse[[0, 1, 2], [0, 1, 2], 16, 16] = 1
        pulse[3, 0, 0, 0] = 1
        w = net(pulse) - f0
        conv = nn.Conv2d(3, 128, 17, padding=8).double()
        conv.weight.copy_(w[:3, :, 8:25, 8:25].flip(-2, -1).transpose(0, 1))
        conv.bias.copy_(f0[0, :, 16, 16])
        x = torch.randn(1, 3, 32, 32, dtype=torch.double)
        gap = (net(x) - conv(x)).abs().amax(1)[0]
    inner = torch.zeros(32, 32, dtype=torch.bool)
    inner[7:25, 7:25] = True
    assert gap[inner].max() < 1e-12  # one convolution in the 18 x 18 interior
    assert gap[~inner].min() > 1e-6  # and no convolution anywhere in the border band
    # the same offset (0) is weighed differently at the centre and in a corner
    assert not torch.allclose(w[0, :, 16, 16], w[3, :, 0, 0])


def test_article_networks_build_by_name_with_their_state_dict_keys():
    # checkpoints of these networks name their layers so: the move to article.py keeps them
    assert list(build_model("article").state_dict())[:2] == ["conv1.weight", "conv1.bias"]
    fixed = build_model("article_fixed", skip=False)
    assert fixed.name == "article_fixed (plain)"
    assert fixed.build_spec == {"name": "article_fixed", "kwargs": {"skip": False}}
    keys = list(ArticleNetFixed().state_dict())
    assert keys[:2] == ["features.0.weight", "features.1.weight"]
    assert "features.6.downsample.0.weight" in keys and keys[-2:] == ["fc.weight", "fc.bias"]


def _article_test_loop(model, batches):
    """The article's test loop as chapter 5 runs it, counting its comparisons as well."""
    correct = total = comparisons = 0
    shapes = set()
    with torch.no_grad():
        for data, target in batches:
            outputs = model(data)
            _, predicted = torch.max(outputs.data, 1)
            total += target.size(0)
            correct += (predicted == target).sum().item()
            comparisons += (predicted == target).numel()
            shapes.add(tuple(predicted.shape))
    return 100 * correct / total, comparisons, total, shapes


def test_article_test_loop_counts_pixels_against_images_for_every_seed():
    # chapter 5: the "accuracy" of the article's loop depends on the weights; its cause does not
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
        for _ in range(2)
    ]
    accuracies = []
    for seed in range(6):
        torch.manual_seed(seed)
        accuracy, comparisons, total, shapes = _article_test_loop(ArticleNet(), batches)
        assert shapes == {(32, 32, 32)}  # one "class" per pixel
        assert total == 64 and comparisons == 32 * 32 * total  # 32 x 32 x 32 per batch of 32
        accuracies.append(accuracy)
    print("printed 'accuracy' by seed:", [f"{a:.0f}%" for a in accuracies])
    assert len(set(accuracies)) > 1
    assert min(accuracies) < 100 < max(accuracies)  # the chapter: above 100% and below
    # the broadcast is silent only because the batch (32) equals the maps' width
    with pytest.raises(RuntimeError, match="must match"):
        _article_test_loop(ArticleNet(), [(batches[0][0][:16], batches[0][1][:16])])
