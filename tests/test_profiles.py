import pytest

from resnet_lab.book.profiles import PROFILES, current_profile


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("RESNET_LAB_PROFILE", "smoke")
    assert current_profile() is PROFILES["smoke"]
    monkeypatch.setenv("RESNET_LAB_PROFILE", "CPU")
    assert current_profile().name == "cpu"


def test_profile_default_follows_hardware(monkeypatch):
    import torch

    monkeypatch.delenv("RESNET_LAB_PROFILE", raising=False)
    assert current_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_bad_profile(monkeypatch):
    monkeypatch.setenv("RESNET_LAB_PROFILE", "tpu")
    with pytest.raises(ValueError, match="smoke.*cpu.*gpu"):
        current_profile()


def test_smoke_is_smallest():
    s, c, g = PROFILES["smoke"], PROFILES["cpu"], PROFILES["gpu"]
    assert s.train_subset < c.train_subset and g.train_subset is None
    assert s.epochs <= c.epochs <= g.epochs


def test_training_work_fits_each_profile_budget():
    from resnet_lab.book.profiles import (
        CPU_RATE,
        CPU_TRAIN_SECONDS,
        GPU_TRAIN_SECONDS,
        T4_RATE,
        training_work,
    )

    cpu = training_work(PROFILES["cpu"])
    assert sum(cpu.values()) <= CPU_RATE * CPU_TRAIN_SECONDS, cpu  # the whole cpu book
    gpu = training_work(PROFILES["gpu"])
    assert max(gpu.values()) <= T4_RATE * GPU_TRAIN_SECONDS, gpu  # each chapter on a T4
    smoke = training_work(PROFILES["smoke"])
    assert sum(smoke.values()) <= sum(cpu.values()) / 10, (
        smoke
    )  # CI: a tenth of the cpu book at most


@pytest.mark.parametrize("depth", [8, 56, 110])
def test_relative_cost_is_the_networks_arithmetic(depth):
    """Counted by hand: every 3x3 conv of the body costs the same (channels double as the map
    shrinks fourfold), 9*16*16*32*32 multiply-adds, but the two that downsample (16 -> 32 and
    32 -> 64 channels, stride 2) cost half of it; the stem 9*3*16*32*32; the head 64*10."""
    from resnet_lab.book.profiles import relative_cost

    conv, stem, head = 9 * 16 * 16 * 32 * 32, 9 * 3 * 16 * 32 * 32, 64 * 10

    def macs(d):
        return stem + (d - 3) * conv + head  # d - 2 body convs, two of them at half the cost

    assert relative_cost(depth) == pytest.approx(macs(depth) / macs(20), rel=1e-3)
