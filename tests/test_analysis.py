import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from resnet_lab.analysis import (
    activation_stats,
    count_macs,
    depth_profile,
    feature_strides,
    gradient_norms,
    lesion,
    lesion_curve,
    shape_trace,
    weight_layers,
)
from resnet_lab.blocks import zero_init_residual_
from resnet_lab.evaluation import evaluate, predict
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet, resnet18, resnet20


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
