import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from resnet_lab.blocks import BasicBlock, PreActBlock, zero_init_residual_
from resnet_lab.book.analysis import (
    activation_stats,
    count_macs,
    depth_profile,
    feature_strides,
    gradient_norms,
    lesion,
    lesion_curve,
    residual_branch,
    shape_trace,
    weight_layers,
)
from resnet_lab.evaluation import evaluate, predict
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet, count_params, resnet18, resnet20


def test_weight_layers_count_depth():
    assert len(weight_layers(cifar_resnet(20))) == 20
    assert len(weight_layers(cifar_resnet(20, shortcut="B"))) == 20  # projections are not counted


def test_shape_trace():
    trace = shape_trace(resnet20())
    assert trace["conv1"] == (1, 16, 32, 32)
    assert trace["layer1"] == (1, 16, 32, 32)
    assert trace["layer2.0"] == (1, 32, 16, 16)
    assert trace["layer3"] == (1, 64, 8, 8)
    assert trace["fc"] == (1, 10)
    assert list(trace).index("layer1.2") < list(trace).index("layer2.0")


def test_count_macs_against_hand_computation():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    # conv: 4 x 8 x 8 outputs of 3 x 3 x 3 multiply-adds each; linear: 10 of 256; two images
    assert count_macs(model, torch.zeros(2, 3, 8, 8)) == 2 * (4 * 8 * 8 * 27 + 10 * 256)
    model.train()
    count_macs(model, torch.zeros(1, 3, 8, 8))
    assert model.training  # the mode is restored


def test_gradient_norms_against_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )
    x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 10, (5,))
    norms = gradient_norms(model, x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    assert norms == pytest.approx(
        [model[0].weight.grad.norm().item(), model[2].weight.grad.norm().item()]
    )
    assert len(gradient_norms(cifar_resnet(8), torch.randn(4, 3, 32, 32), torch.arange(4))) == 8


def test_gradient_norms_closed_form_linear():
    # logits = W x with W = 0: softmax is uniform, so dL/dW = (p - onehot) x^T, norm known exactly
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    nn.init.zeros_(model[0].weight)
    x, y = torch.tensor([[3.0, 4.0]]), torch.tensor([0])
    (g,) = gradient_norms(model, x, y)
    # (p - onehot) = (-0.5, 0.5); outer product with (3, 4): norm = sqrt(0.5) * 5
    assert g == pytest.approx(5 * 0.5**0.5)


def test_activation_stats_zero_init_stage_passes_signal():
    torch.manual_seed(0)
    model = cifar_resnet(20, zero_init_residual=True).eval()
    stats = activation_stats(model, torch.randn(8, 3, 32, 32))
    assert len(stats["std"]) == 9 and stats["block"][0] == "layer1.0"
    # with F = 0 the first stage's blocks pass relu(x) on unchanged: identical statistics
    assert stats["std"][0] == pytest.approx(stats["std"][1]) == pytest.approx(stats["std"][2])


def test_depth_profile_plain_explodes_more():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    res = depth_profile(32, x, y, skip=True)
    plain = depth_profile(32, x, y, skip=False)
    assert res["params"] == plain["params"] == 464_154

    def ratio(p):
        return p["grad_norms"][0] / p["grad_norms"][-2]

    assert ratio(plain) > ratio(res)


def _tiny_loader():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    return CifarLoader(images, torch.arange(40) % 10, 20, train=False, device="cpu")


def test_lesion_of_zero_branch_block_changes_nothing():
    model = cifar_resnet(14)
    zero_init_residual_(
        model.layer2[1]
    )  # this block computes relu(x) = x on its (non-negative) input
    loader = _tiny_loader()
    block = model.layer2[1]
    _, intact = evaluate(model, loader)
    assert lesion(model, loader, 3) == intact  # block 3 = layer2[1]
    assert model.layer2[1] is block  # the very block is back in its place
    before = predict(model, loader)
    live = model.layer3[0]  # a block whose branch is not zero
    lesion(model, loader, 4)  # blocks 0-1: layer1, 2-3: layer2, 4-5: layer3
    assert model.layer3[0] is live and model.blocks()[4] is live
    assert torch.equal(predict(model, loader), before)  # the network computes as before


def test_lesion_plain_first_block_of_stage_cannot_be_removed():
    plain = cifar_resnet(14, skip=False)
    loader = _tiny_loader()
    with pytest.raises(ValueError, match="cannot be removed"):
        lesion(plain, loader, 2)  # layer2[0] changes 16 -> 32 channels
    curve = lesion_curve(plain, loader)
    assert curve[2] is None and curve[4] is None and curve[0] is not None
    with pytest.raises(ValueError, match="block_index"):
        lesion(plain, loader, 99)


def test_residual_branch_is_the_basic_block_before_the_sum():
    torch.manual_seed(0)
    block = BasicBlock(4, 4).eval()
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(residual_branch(block, x) + x))
    with pytest.raises(TypeError, match="takes a BasicBlock, got PreActBlock"):
        residual_branch(PreActBlock(4, 4), x)


def _fit_identity(block, x, steps=300):
    """Chapter 2's fit_identity: Adam at lr 0.01 on the MSE between block(x) and x."""
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(block(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _rms(t):
    return t.pow(2).mean().sqrt().item()


def test_chapter2_identity_race_claims_hold_for_several_seeds():
    # chapter 2, "What a residual block learns": what its asserts claim, from other seeds
    finals = []
    for seed in range(4):
        torch.manual_seed(seed)
        x = torch.relu(torch.randn(64, 8, 8, 8))
        torch.manual_seed(seed + 1)
        plain, residual = BasicBlock(8, 8, skip=False), BasicBlock(8, 8)
        residual.load_state_dict(plain.state_dict())
        conv2_start = residual.conv2.weight.norm().item()
        plain_losses, residual_losses = _fit_identity(plain, x), _fit_identity(residual, x)
        # the residual block nears the identity faster
        assert all(plain_losses[s] > 1.25 * residual_losses[s] for s in (30, 100)), seed
        finals.append(plain_losses[-1] / residual_losses[-1])
        with torch.no_grad():
            f = residual_branch(residual, x)
            gamma = residual.bn2.weight.abs()
            spread = f.std(dim=(0, 2, 3), unbiased=False)
            passed = f + x > 0
            err = (residual(x) - x).pow(2)
        assert gamma.min() > 0.3 and residual.conv2.weight.norm().item() > conv2_start, seed
        assert torch.all(spread <= gamma + 1e-6) and torch.all(spread > gamma / 2), seed
        assert _rms(f) > 0.3 and _rms(f[passed]) < 0.05, seed
        assert f[~passed].pow(2).sum() / f.pow(2).sum() > 0.99, seed
        assert (~passed & (x == 0)).sum() > 0.9 * (~passed).sum(), seed
        assert err[~passed & (x > 0)].sum() / err.sum() > 0.5, seed
    # by step 300 the race is not decided: from some weights the plain block ends lower
    assert min(finals) < 1 < max(finals), finals


# ---------------------------------------------------------------- forward order, stages, paths


def test_forward_steps_record_the_order_and_the_shortcut():
    from resnet_lab.blocks import BasicBlock, PreActBlock
    from resnet_lab.book.analysis import forward_steps

    x = torch.randn(2, 16, 8, 8)

    def flow(block):
        return [(s.name, s.inputs) for s in forward_steps(block, x)]

    basic = [("conv1", (0,)), ("bn1", (1,)), ("relu", (2,)), ("conv2", (3,)), ("bn2", (4,))]
    assert flow(BasicBlock(16, 16)) == [("input", ()), *basic, ("add", (5, 0)), ("relu", (6,))]
    assert flow(BasicBlock(16, 16, skip=False)) == [("input", ()), *basic, ("relu", (5,))]
    pre = ["input", "bn1", "relu", "conv1", "bn2", "relu", "conv2", "add"]
    steps = forward_steps(PreActBlock(16, 16), x)
    assert [s.name for s in steps] == pre and steps[-1].inputs == (6, 0)
    # a shape-changing shortcut is a step of its own, read by the sum
    down = forward_steps(BasicBlock(16, 32, 2), x)
    assert [(s.name, s.inputs) for s in down[-3:]] == [
        ("downsample", (0,)),
        ("add", (5, 6)),
        ("relu", (7,)),
    ]


def test_forward_steps_leave_the_module_as_it_was():
    from resnet_lab.blocks import BasicBlock
    from resnet_lab.book.analysis import forward_steps

    block = BasicBlock(16, 16).train()
    before = block.bn1.running_mean.clone()
    forward_steps(block, torch.randn(4, 16, 8, 8) + 3)
    assert block.training and torch.equal(block.bn1.running_mean, before)  # ran in eval mode
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in block.modules())


@pytest.mark.parametrize("norm_first", [False, True])
def test_forward_steps_of_torchs_transformer_layer(norm_first):
    from resnet_lab.book.analysis import forward_steps

    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    layer.norm_first = norm_first
    steps = [s for s in forward_steps(layer, torch.randn(2, 5, 32)) if "dropout" not in s.name]
    names = [s.name for s in steps]
    if norm_first:  # x + attention(norm1(x)), then + mlp(norm2(.)): nothing after the last sum
        want = "input norm1 self_attn add norm2 linear1 relu linear2 add"
    else:  # norm1(x + attention(x)), then norm2(. + mlp(.))
        want = "input self_attn add norm1 linear1 relu linear2 add norm2"
    assert names == want.split()
    first_add = names.index("add")
    assert 0 in steps[first_add].inputs  # the first sum reads the layer's input


def test_stage_table_and_the_paper_layout():
    from resnet_lab.book.analysis import imagenet_costs, stage_table, stride_on_first_1x1_
    from resnet_lab.models import imagenet_resnet

    rows = stage_table(resnet20(), (1, 3, 32, 32))
    assert [(r["output"], r["blocks"]) for r in rows] == [
        ((16, 32, 32), 3),
        ((32, 16, 16), 3),
        ((64, 8, 8), 3),
    ]
    assert rows[0]["convs"] == [(3, 16), (3, 16)]
    model = imagenet_resnet(50)
    moved = stride_on_first_1x1_(copy.deepcopy(model))
    assert count_params(moved) == count_params(model)
    x = torch.randn(1, 3, 64, 64)
    assert moved(x).shape == model(x).shape
    assert count_macs(moved, x) < count_macs(model, x)
    assert moved.layer2[0].conv1.stride == (2, 2) and moved.layer2[0].conv2.stride == (1, 1)
    costs = imagenet_costs(18)
    assert costs["conv1_output"] == (64, 112, 112) and costs["maxpool_output"] == (64, 56, 56)
    assert costs["macs"] == costs["paper_layout_macs"]  # no bottleneck: nothing to move


def test_unrolled_paths_count_and_lengths():
    import math

    from resnet_lab.book.analysis import path_lengths, unrolled_paths

    for n in range(7):
        paths = unrolled_paths(n)
        assert len(paths) == len(set(paths)) == 2**n == sum(path_lengths(n))
        lengths = [sum(len(p) == k for p in paths) for k in range(n + 1)]
        assert lengths == path_lengths(n) == [math.comb(n, k) for k in range(n + 1)]
        # removing block 0 removes the paths through it: half of them
        assert n == 0 or sum(0 not in p for p in paths) == 2 ** (n - 1)
    assert unrolled_paths(2) == [(), (0,), (1,), (0, 1)]


def test_a_linear_residual_stack_is_the_sum_of_its_paths():
    from resnet_lab.book.analysis import unrolled_paths

    torch.manual_seed(0)
    n, d = 5, 6
    branches = [torch.randn(d, d, dtype=torch.float64) / d for _ in range(n)]
    x = torch.randn(d, dtype=torch.float64)
    y = x
    for a in branches:  # y <- y + F(y), F linear
        y = y + a @ y
    total = torch.zeros(d, dtype=torch.float64)
    for path in unrolled_paths(n):
        term = x
        for i in path:
            term = branches[i] @ term
        total += term
    torch.testing.assert_close(total, y)


def test_count_macs_of_a_depthwise_convolution():
    """groups=C: each output channel sees one input channel, C * 9 multiply-adds a position."""
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    assert count_macs(conv, torch.zeros(1, 32, 10, 10)) == 32 * 9 * 10 * 10


def _stages(model, names):
    """The outputs of the named modules, as torchvision's detectors take them."""
    return create_feature_extractor(model.eval(), return_nodes={n: n for n in names})


def test_feature_strides_of_resnet18_stages_on_a_non_square_image():
    image = torch.zeros(1, 3, 64, 96)
    body = _stages(resnet18(), ["layer1", "layer2", "layer3", "layer4"])
    with torch.no_grad():
        features = body(image)
    assert feature_strides(features, image) == {
        "layer1": 4,
        "layer2": 8,
        "layer3": 16,
        "layer4": 32,
    }
    assert [f.shape[1] for f in features.values()] == [64, 128, 256, 512]


def test_feature_strides_of_a_cifar_resnet():
    image = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        features = _stages(resnet20(), ["conv1", "layer2", "layer3"])(image)
    assert feature_strides(features, image) == {"conv1": 1, "layer2": 2, "layer3": 4}


def test_feature_strides_refuse_maps_that_are_not_one_stride():
    image = torch.zeros(1, 3, 36, 32)  # 36 is not a multiple of 8
    with torch.no_grad():
        features = _stages(resnet18(), ["layer1", "layer2"])(torch.zeros(1, 3, 36, 32))
    with pytest.raises(ValueError, match="'layer2' is 5x4 for a 36x32 image"):
        feature_strides(features, image)
    with pytest.raises(ValueError, match="multiples of the largest stride"):
        feature_strides({"c": torch.zeros(1, 8, 4, 8)}, torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="not a feature map"):
        feature_strides({"logits": torch.zeros(1, 10)}, image)


@pytest.mark.parametrize("seed", [1, 2])
def test_chapter3_gradient_and_signal_claims_hold_for_other_seeds(seed):
    # chapter 3's asserts on other initialisations and other images: smooth random images
    # (8 x 8 noise, upsampled) stand in for CIFAR-10's
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.randn(16, 3, 8, 8, generator=g), size=32, mode="bilinear")
    labels = torch.arange(16) % 10
    ratio, norms = {}, {}
    for depth, skip in ((20, False), (56, True), (56, False)):
        torch.manual_seed(seed)
        norms[depth, skip] = gradient_norms(cifar_resnet(depth, skip=skip), images, labels)
        ratio[depth, skip] = norms[depth, skip][0] / norms[depth, skip][-2]
    assert ratio[56, False] > 100 and ratio[56, True] < 30
    assert ratio[56, False] > 10 * ratio[20, False]
    # nearly every step back through a plain conv grows the gradient
    g56 = norms[56, False]
    steps = [a / b for a, b in itertools.pairwise(g56[:-1])]  # conv to conv
    assert sum(s > 1 for s in steps) > 0.75 * len(steps)
    assert ratio[56, False] ** (1 / len(steps)) > 1.05
    # the signal: growing within each residual stage, pinned in the plain network
    torch.manual_seed(seed)
    net = cifar_resnet(56)
    res = activation_stats(net, images)["std"]
    torch.manual_seed(seed)
    plain = activation_stats(cifar_resnet(56, skip=False), images)["std"]
    assert all(b > a for i in (0, 9, 18) for a, b in zip(res[i : i + 8], res[i + 1 : i + 9]))
    assert max(plain) / min(plain) < 1.5
    # and the unrolled sum x_0 + sum F(x_i) is far from the post-activation stream
    with torch.no_grad():
        x = net.relu(net.bn1(net.conv1(images)))
        unrolled = x.clone()
        for block in net.layer1:
            f = residual_branch(block, x)
            x, unrolled = block(x), unrolled + f
    assert (x - unrolled).norm() > 0.3 * x.norm()
