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

from resnet_lab.loader import CifarLoader, normalize, random_crop_flip

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
    recorded = {
        "default": "a427090d62f9fe08",
        "no crop": "19622f5453f4b87a",
        "no flip": "c6640606c03294e2",
    }
    for name, kwargs in [("default", {}), ("no crop", {"pad": 0}), ("no flip", {"flip": False})]:
        out = random_crop_flip(images, torch.Generator().manual_seed(0), **kwargs)
        assert _digest([out]) == recorded[name], name
    assert _digest([normalize(images)]) == "173dd4d481ec7093"


def test_crop_flip_each_image_its_own():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    batch = img.repeat(64, 1, 1, 1)
    out = random_crop_flip(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))[0]
    found = []
    for o in out:
        hits = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal((o.flip(2) if f else o), padded[:, dy : dy + 32, dx : dx + 32])
        ]
        assert hits, "every output is a crop of the padded input, possibly mirrored"
        found.append(hits[0])
    assert (
        len(set(found)) > 30
    )  # 64 images, 162 possible (crop, flip) pairs: far from one shared offset
    assert 10 < sum(f for _, _, f in found) < 54  # about half flipped


def test_loader_keeps_labels_and_is_deterministic():
    n = 300
    labels = torch.arange(n) % 10
    images = (labels * 20 + 10).to(torch.uint8).view(n, 1, 1, 1).repeat(1, 3, 32, 32)
    a = CifarLoader(images, labels, 64, seed=1, device="cpu")
    b = CifarLoader(images, labels, 64, seed=1, device="cpu")
    c = CifarLoader(images, labels, 64, seed=2, device="cpu")
    assert len(a) == 4  # drop_last for training
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        # padding is 0 before normalising; the image's own pixels tell its label
        pixel = (ya * 20 + 10).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 1, 1)
        assert torch.equal(xa.amax(dim=(2, 3), keepdim=True), normalize(pixel))
    assert not torch.equal(next(iter(a))[1], next(iter(c))[1])
    # a new epoch reshuffles
    a.set_epoch(0)
    first = next(iter(a))[1]
    a.set_epoch(1)
    assert not torch.equal(first, next(iter(a))[1])


def test_eval_loader_is_ordered_and_unaugmented():
    images = torch.randint(0, 256, (25, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(25) % 10
    loader = CifarLoader(images, labels, 10, train=False, device="cpu")
    xs, ys = zip(*loader)
    assert len(loader) == 3 and [len(y) for y in ys] == [10, 10, 5]
    torch.testing.assert_close(torch.cat(xs), normalize(images))
    assert torch.equal(torch.cat(ys), labels)


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        CifarLoader(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), device="cpu")
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        CifarLoader(
            torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
            torch.zeros(3, dtype=torch.long),
            device="cpu",
        )


def test_set_epoch_is_the_one_epoch_mechanism():
    images, labels = images_and_labels()
    loader = CifarLoader(images, labels, 16, device="cpu", seed=0)
    first, again = loader_digest(loader), loader_digest(loader)
    assert first == again == RECORDED["crop+flip"][1][0]  # passes without set_epoch: epoch 0
    loader.set_epoch(1)
    assert loader_digest(loader) == RECORDED["crop+flip"][1][1]


def test_an_epoch_is_drawn_once_and_the_statistics_made_once(monkeypatch):
    import resnet_lab.loader as L

    calls = {"draw": 0, "stats": 0}
    real_draw, real_stats = L.draw_crop_flip, L.channel_stats

    def draw(*a, **k):
        calls["draw"] += 1
        return real_draw(*a, **k)

    def stats(*a, **k):
        calls["stats"] += 1
        return real_stats(*a, **k)

    monkeypatch.setattr(L, "draw_crop_flip", draw)
    monkeypatch.setattr(L, "channel_stats", stats)
    images, labels = images_and_labels()
    loader = CifarLoader(images, labels, 16, device="cpu", seed=0)
    batches = iter(loader)
    next(batches)
    assert calls == {"draw": len(loader), "stats": 1}  # the whole epoch, before its first batch
    list(batches)
    assert calls == {"draw": len(loader), "stats": 1}  # and nothing more per batch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", ["crop+flip", "crop+alternate", "eval"])
def test_cuda_batches_are_the_cpu_batches_and_never_wait_for_the_host(case):
    kwargs, _ = RECORDED[case]
    images, labels = images_and_labels()
    cpu = CifarLoader(images, labels, 16, device="cpu", seed=0, **kwargs)
    gpu = CifarLoader(images, labels, 16, device="cuda", seed=0, **kwargs)
    cpu.set_epoch(1), gpu.set_epoch(1)
    batches = iter(gpu)
    next(batches)  # the epoch's draws and their copies to the device happen here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a synchronising call from now on raises
    try:
        rest = list(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = list(cpu)[1:]
    assert len(rest) == len(want)
    for (x, y), (xc, yc) in zip(rest, want):
        assert torch.equal(y.cpu(), yc)
        torch.testing.assert_close(x.cpu(), xc, rtol=0, atol=1e-6)
