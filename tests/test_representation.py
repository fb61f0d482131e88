import pytest
import torch
import torch.nn.functional as F

from resnet_lab.book.representation import (
    block_feature_ranks,
    effective_rank,
    stage_features,
    stage_probe_accuracy,
)
from resnet_lab.models import cifar_resnet


def test_effective_rank_counts_directions():
    g = torch.Generator().manual_seed(0)
    line = torch.randn(50, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-4)
    even = torch.cat([torch.eye(4), -torch.eye(4)])  # centred, equal spread along 4 axes
    assert effective_rank(even) == pytest.approx(4.0)
    lopsided = even * torch.tensor([10.0, 1.0, 1.0, 1.0])
    assert 1.0 < effective_rank(lopsided) < 4.0


def test_block_feature_ranks_one_per_block_and_mode_restored():
    torch.manual_seed(0)
    model = cifar_resnet(8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ranks = block_feature_ranks(model, torch.randn(20, 3, 32, 32))
    assert len(ranks) == len(model.blocks()) and all(1 <= r <= 64 for r in ranks)
    assert not model.training
    # measured in train mode on a copy: the running statistics are the model's own still
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_deep_plain_loses_directions_for_other_seeds(seed):
    # the chapter's claim, on other initialisations; smooth random images (4 x 4 noise,
    # upsampled) stand in for CIFAR-10's, whose neighbouring pixels are alike too
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(128, 3, 4, 4, generator=g)
    images = F.interpolate(coarse, size=32, mode="bilinear")
    last = {}
    for depth, skip in ((20, False), (56, True), (56, False)):
        torch.manual_seed(seed)
        last[depth, skip] = block_feature_ranks(cifar_resnet(depth, skip=skip), images)[-1]
    assert last[56, False] < 0.75 * last[56, True]
    assert last[56, False] < 0.8 * last[20, False]


def test_stage_features_and_probe(tiny_data):
    torch.manual_seed(0)
    model = cifar_resnet(8)
    feats = stage_features(model, tiny_data.test_images)
    assert list(feats) == ["stem", "stage 1", "stage 2", "stage 3"]
    assert [f.shape[1] for f in feats.values()] == [16, 16, 32, 64]
    assert model.training  # the mode is restored
    accs = stage_probe_accuracy(model, tiny_data)
    assert set(accs) == set(feats) and all(0.0 <= a <= 1.0 for a in accs.values())
    assert max(accs.values()) > 0.2  # the bright band is linearly readable somewhere
