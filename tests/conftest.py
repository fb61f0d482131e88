"""Shared fixtures: small CIFAR-10-shaped data sets made on the fly (synthetic images are for
unit tests only; nothing the book shows comes from them)."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_lab.cifar10 import CLASSES, CifarData
from resnet_lab.config import TrainConfig
from resnet_lab.lab.cli import main


def _image(rng, label):
    arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    arr[0, 0] = label * 20  # a pixel that tells the label, to check label order
    return arr


def _png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own user cache and data folders (so its own results folder, empty),
    no RESNET_LAB_DATA and no RESNET_LAB_RESULTS."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("RESNET_LAB_DATA", raising=False)
    monkeypatch.delenv("RESNET_LAB_RESULTS", raising=False)


@pytest.fixture
def image_folder(tmp_path):
    """train/<class>/*.png (3 per class) and test/<class>/*.png (2 per class)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "folders"
    for split, n in (("train", 3), ("test", 2)):
        for label, cls in enumerate(CLASSES):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i:04d}.png").write_bytes(_png_bytes(_image(rng, label)))
    return root


def make_archives(src, dest, sums=True):
    import hashlib

    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for split in ("train", "test"):
        path = dest / f"{split}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(src / split, arcname=split)
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    if sums:
        (dest / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return dest


@pytest.fixture
def archive_folder(image_folder, tmp_path):
    return make_archives(image_folder, tmp_path / "archives")


@pytest.fixture
def python_batches(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "pyroot" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 10)]:
        labels = list(range(10))[:n]
        data = np.stack([_image(rng, y).transpose(2, 0, 1).reshape(-1) for y in labels])
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    return d.parent


@pytest.fixture
def tiny_data():
    """200 train / 100 test random images with a learnable signal: class = brightest band."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 128, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        for c in range(10):
            images[labels == c, :, 3 * c : 3 * c + 3, :] = 255
        return images, labels

    xtr, ytr = make(200)
    xte, yte = make(100)
    return CifarData(xtr, ytr, xte, yte, CLASSES, "synthetic test data")


# ---------------------------------------------------------------------------- shared helpers

# one epoch of ten-image batches on the CPU in fp32: the cheapest real run
ONE_EPOCH = TrainConfig(
    epochs=1, batch_size=10, lr=0.05, device="cpu", precision="fp32", channels_last=False
)


# the cheapest `train` command: a resnet8, ten-image batches, on the CPU in fp32, quietly
TRAIN_ARGS = "--model resnet8 --no-download --batch-size 10 --device cpu --precision fp32".split()
TRAIN_ARGS.append("--no-progress")


def cli_train(folder, out, *extra) -> int:
    """``python -m resnet_lab train`` of a resnet8 for one epoch on ``folder``'s images."""
    return main(
        ["train", *TRAIN_ARGS, "--data", str(folder), "--epochs", "1", "--out", str(out), *extra]
    )


def last_error(capsys) -> str:
    """The CLI's error, which must be one line starting ``error: ``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), f"expected a one-line error, got {err}"
    return err[0]


@pytest.fixture
def interrupt_checkpoint_write(monkeypatch):
    """``interrupt_checkpoint_write(epoch)``: from then on, the trainer's checkpoint write of
    ``epoch`` raises KeyboardInterrupt (Ctrl-C in the middle of saving); the others write."""
    import resnet_lab.run as run  # where save_run writes the checkpoint

    real = run.save_checkpoint

    def arm(epoch: int) -> None:
        def save(path, model, optimizer, scheduler, at, *args, **kwargs):
            if at == epoch:
                raise KeyboardInterrupt
            return real(path, model, optimizer, scheduler, at, *args, **kwargs)

        monkeypatch.setattr(run, "save_checkpoint", save)

    return arm
