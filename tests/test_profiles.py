import pytest

from resnet_lab.profiles import PROFILES, current_profile


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
