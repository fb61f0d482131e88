import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import resnet_lab.book.article  # noqa: F401  (registers the article's networks by name)
from resnet_lab.book.reference import load_reference_weights
from resnet_lab.checkpoints import model_signature
from resnet_lab.lab.cli import main
from resnet_lab.lab.names import build_model, check_model_name
from resnet_lab.models import (
    cifar_blocks_per_stage,
    cifar_resnet,
    count_params,
    imagenet_resnet,
    resnet18,
    resnet20,
    resnet50,
)

# He et al. 2015, Table 6 (option A); exact counts as the akamaster reproduction prints them
PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth,expected", PAPER_PARAMS.items())
def test_parameter_counts_match_paper(depth, expected):
    assert count_params(cifar_resnet(depth)) == expected
    # the plain twin has exactly the same parameters: option A shortcuts have none
    assert count_params(cifar_resnet(depth, skip=False)) == expected


def test_builders_and_output_shape():
    x = torch.randn(2, 3, 32, 32)
    for name in ("resnet20", "plain20", "resnet32", "plain44"):
        assert build_model(name)(x).shape == (2, 10)
    assert build_model("resnet18").fc.out_features == 1000  # ImageNet names as in torchvision
    assert build_model("plain8").name == "plain8"
    assert cifar_resnet(20, num_classes=100)(x).shape == (2, 100)
    assert cifar_resnet(11, block="bottleneck")(x).shape == (2, 10)
    assert cifar_resnet(20, block="preact", width=8)(x).shape == (2, 10)
    m = cifar_resnet(56, skip=False)
    assert not m.skip and all(b.downsample is None for b in m.blocks())
    assert len(m.blocks()) == 27


def test_weight_layer_count_is_depth():
    for depth in (20, 56):
        m = cifar_resnet(depth)
        n_layers = sum(isinstance(x, (nn.Conv2d, nn.Linear)) for x in m.modules())
        assert n_layers == depth


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=21), r"6n\+2 .*got 21"),
        (dict(depth=0), r"6n\+2"),
        (dict(depth=26, block="bottleneck"), r"9n\+2 .*got 26"),
        (dict(depth=20, shortcut="Z"), "shortcut must be one of"),
        (dict(depth=20, block="dense"), "block must be one of"),
        (dict(depth=20, width=0), "width must be a positive integer"),
        (dict(depth=20, width=15), "width must be even"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    depth = kwargs.pop("depth")
    with pytest.raises(ValueError, match=match):
        cifar_resnet(depth, **kwargs)


def test_imagenet_bad_depth():
    with pytest.raises(ValueError, match="18, 34, 50"):
        imagenet_resnet(20)


@pytest.mark.parametrize("depth", [18, 50])
def test_imagenet_resnets_load_torchvision_weights(depth):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    ours = {18: resnet18, 50: resnet50}[depth]()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # strict: same keys and shapes
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_gradients_reach_first_layer():
    for skip in (True, False):
        m = resnet20(skip=skip) if skip else cifar_resnet(20, skip=False)
        x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        F.cross_entropy(m(x), y).backward()
        g = m.conv1.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_zero_init_residual_makes_blocks_identity():
    m = resnet20(zero_init_residual=True)
    assert all(b.bn2.weight.abs().sum() == 0 for b in m.blocks())
    # each block in stage 1 (identity shortcut) passes its non-negative input through unchanged
    x = torch.relu(torch.randn(2, 16, 8, 8))
    assert torch.equal(m.layer1(x), x)


# --- akamaster/pytorch_resnet_cifar10 interop -------------------------------------------
# A minimal model with that repository's layout and key names, written here so the test can
# build a state dict of its form without downloading anything.


class _AkaBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (stride != 1 or in_planes != planes) and planes // 4

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x
        return F.relu(out + sc)


class _AkaResNet(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, planes in enumerate((16, 32, 64), start=1):
            blocks = []
            for j in range(n):
                blocks.append(_AkaBlock(planes_in, planes, 2 if (j == 0 and i > 1) else 1))
                planes_in = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return self.linear(out)


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_reference_weights_load_and_match_outputs():
    torch.manual_seed(0)
    ref = _AkaResNet(3)
    _randomise_bn(ref)
    # as saved by that repository: DataParallel prefix, no num_batches_tracked, under "state_dict"
    sd = {"module." + k: v for k, v in ref.state_dict().items() if "num_batches_tracked" not in k}
    ours = load_reference_weights(resnet20(), {"state_dict": sd, "best_prec1": 91.7})
    ref.eval(), ours.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_reference_weights_wrong_depth():
    sd = _AkaResNet(5).state_dict()  # a ResNet-32
    with pytest.raises(ValueError, match="ResNet-32 .* model is a ResNet-20.*cifar_resnet\\(32\\)"):
        load_reference_weights(resnet20(), sd)


# --- names, depths and arguments that cannot build a model ------------------------------


def test_absurd_depths_are_refused_before_anything_is_built():
    # 99999998 is 6n+2: without a bound it allocated 50 million blocks
    with pytest.raises(ValueError, match=r"6n\+2 .* up to 2000.*got 99999998"):
        check_model_name("resnet99999998")
    with pytest.raises(ValueError, match=r"6n\+2 .* up to 2000.*got 2006"):
        cifar_blocks_per_stage(2006)
    assert cifar_blocks_per_stage(2000) == 333 and cifar_blocks_per_stage(2000, "bottleneck") == 222
    with pytest.raises(ValueError, match=r"depth must be 6n\+2 up to 2000"):
        check_model_name("plain" + "9" * 5000)  # int() of 5000 digits fails with its own message


def test_depth_error_lists_every_small_depth():
    with pytest.raises(ValueError, match=r"6n\+2 for 'basic' blocks \(8, 14, 20, 26, \.\.\."):
        cifar_resnet(21)
    with pytest.raises(ValueError, match=r"9n\+2 for 'bottleneck' blocks \(11, 20, 29, 38, \.\.\."):
        cifar_resnet(26, block="bottleneck")


@pytest.mark.parametrize(
    "name, use",
    [("cifar_resnet", "resnet20 / resnet56 / plain56"), ("imagenet_resnet", "resnet18 / resnet50")],
)
def test_builder_names_say_they_need_a_depth(name, use, capsys):
    needs = f"'{name}' needs a depth: use {use}"
    for call in (check_model_name, build_model):
        with pytest.raises(ValueError, match=needs):
            call(name)
    assert main(["train", "--model", name, "--device", "cpu"]) == 2  # before any data is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needs in err[0]
    assert build_model("cifar_resnet", depth=8).name == "resnet8"  # with a depth, as documented


def test_unknown_build_arguments_name_them(tmp_path, capsys):
    unknown = r"model 'resnet20' has no argument 'foo' \(it takes \['depth', 'skip'"
    with pytest.raises(ValueError, match=unknown + ".*written by another version of resnet_lab"):
        build_model("resnet20", foo=1)
    with pytest.raises(ValueError, match="model 'article_fixed' has no argument 'bar'"):
        build_model("article_fixed", bar=2)
    with pytest.raises(ValueError, match=r"model 'resnet20' fixes depth=20; .*'cifar_resnet'"):
        build_model("resnet20", depth=32)
    assert build_model("resnet20", depth=20).name == "resnet20"
    # a checkpoint written by a version whose builder took another argument
    model = cifar_resnet(8, width=4)
    path = tmp_path / "future.pt"
    torch.save(
        {
            "format": "resnet_lab.weights/1",
            "model_name": "resnet8",
            "build": {"name": "resnet20", "kwargs": {"foo": 1}},
            "signature": model_signature(model),
            "model": model.state_dict(),
            "epoch": 1,
        },
        path,
    )
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no argument 'foo'" in err[0] and "another version" in err[0]


# ---------------------------------------------------------------- from the reliability issues


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_num_classes_must_be_positive(n):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        cifar_resnet(20, num_classes=n)
