"""The device-resident loader: the batches it yields, bit for bit, for a given seed and epoch.

The digests below were recorded from the loader as it stood at commit fa449da (before the loader
drew a whole epoch's crops and flips at once, and before it made its mean and std once): the
same seed and epoch must keep giving the same batches, or a run resumed from an old checkpoint
would not continue the run it interrupted. They are CPU digests (a GPU's bilinear resize may
round differently).
"""

import hashlib

import pytest
import torch

from resnet_lab.data import CifarLoader, normalize, random_crop_flip

# view a float tensor's bytes as integers of the same width, to hash them exactly
_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


def images_and_labels(n: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    """70 images made by arithmetic, not by an RNG: the same bytes on every torch version."""
    values = (torch.arange(n * 3 * 32 * 32) * 2654435761 % 251).to(torch.uint8)
    return values.view(n, 3, 32, 32), torch.arange(n) % 10


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape), t.stride())).encode())
        t = t.contiguous()
        h.update(t.view(_BITS.get(t.dtype, t.dtype)).numpy().tobytes())
    return h.hexdigest()[:16]


def loader_digest(loader) -> str:
    return _digest(t for batch in loader for t in batch)


# loader arguments -> digests of epochs 0 and 1, and of epoch 1 resized to 24 pixels
RECORDED = {
    "crop+flip": ({}, ("7edc021da9c6bead", "787eda440e6931db", "699a5506b3bad0ba")),
    "partial last batch": (
        {"drop_last": False},
        ("bbdd0b37d91e55ea", "c387e83be9a6b0c3", "998aa51b6fae5ef3"),
    ),
    "flip only": ({"crop_pad": 0}, ("a2b33f25136c9b28", "b91dfe26d9bbff1b", "22536d7649649732")),
    "crop only": ({"flip": False}, ("42b38de77dd03da0", "eaa272b00f7cc6ba", "af1dbe560e538764")),
    "crop+alternate": (
        {"flip": "alternate"},
        ("0daaa9e8e638d8fb", "c36d022109d71f1c", "43d831fd3f2ad1a9"),
    ),
    "alternate only": (
        {"crop_pad": 0, "flip": "alternate"},
        ("d9ef3432cdafdc78", "5d46d3b74e5362f0", "f9bd64714dbf6f47"),
    ),
    # no resized digest: bilinear resizing with antialias has no bf16 kernel on the CPU
    "bf16, channels_last": (
        {"dtype": torch.bfloat16, "channels_last": True},
        ("f554bdb0f1ac92ba", "a986e8c99956533e"),
    ),
    "eval": ({"train": False}, ("b24425086d58ff5f", "b24425086d58ff5f", "a8c1a76d1a495354")),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_batches_are_those_recorded_for_seed_0(case):
    kwargs, want = RECORDED[case]
    images, labels = images_and_labels()
    got = []
    for epoch, size in [(0, 32), (1, 32), (1, 24)][: len(want)]:
        loader = CifarLoader(images, labels, 16, device="cpu", seed=0, **kwargs)
        loader.size = size
        loader.set_epoch(epoch)
        got.append(loader_digest(loader))
    assert tuple(got) == want


def test_augmentation_and_normalisation_are_those_recorded():
    images, _ = images_and_labels()
    recorded = {"default": "a427090d62f9fe08", "no crop": "19622f5453f4b87a",
                "no flip": "c6640606c03294e2"}
    for name, kwargs in [("default", {}), ("no crop", {"pad": 0}), ("no flip", {"flip": False})]:
        out = random_crop_flip(images, torch.Generator().manual_seed(0), **kwargs)
        assert _digest([out]) == recorded[name], name
    assert _digest([normalize(images)]) == "173dd4d481ec7093"
