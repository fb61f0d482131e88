"""CIFAR-10's files: the three layouts :func:`resnet_lab.cifar10.load_cifar10` reads, and the
checks that name what is wrong with them.

- image folders, ``train/<class>/*`` and ``test/<class>/*`` (PNG or JPEG): :func:`from_folders`;
- their ``train.tar.gz`` / ``test.tar.gz`` archives, checked against a ``SHA256SUMS`` file when
  one is present: :func:`from_archives`;
- the official python batches (``cifar-10-batches-py/``), unpickled with a loader that refuses
  anything but their arrays: :func:`from_python_batches`.

Each ``from_*`` function returns ``(key, source, read)`` when its layout is there, or ``None``
after noting what it looked for in ``tried``: ``key`` is a checksum of the files' contents (the
cache is named by it), ``source`` the line :meth:`CifarData.describe` starts with, and
``read()`` decodes the images into uint8 tensors (N, 3, 32, 32) and int64 labels (N,).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

# the class names in label order: the folder names of the image layouts, and the order of the
# official batches' labels
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# the globals an official python batch names: its numpy arrays (numpy 1 pickles under numpy.core,
# numpy 2 under numpy._core). Dicts, lists, bytes, str and int need none.
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class DataError(ValueError):
    """The data could not be found or read; the message says what was tried and how to fix it."""

    def _render_traceback_(self) -> list[str]:  # IPython: the message alone, no traceback
        return [f"DataError: {self}"]


def not_found(root: Path, tried: list[str], why: str) -> str:
    lines = "\n".join(f"  - {t}" for t in tried)
    return (
        f"CIFAR-10 not found under {root} ({why}). Tried:\n{lines}\n"
        "Fix: set RESNET_LAB_DATA (or pass root=) to a folder holding train/<class>/ and "
        "test/<class>/ images, their train.tar.gz/test.tar.gz archives, or torchvision's "
        "cifar-10-batches-py/; or allow download=True with a network connection."
    )


def _check_classes(found: list[str], where: Path) -> None:
    missing = [c for c in CLASSES if c not in found]
    extra = [c for c in found if c not in CLASSES]
    if missing or extra:
        raise DataError(
            f"{where} must hold one folder per CIFAR-10 class {list(CLASSES)}; "
            f"missing {missing}, unexpected {extra}. "
            "Fix the folder names (or restore the missing ones)."
        )


def _list_split(folder: Path) -> dict[str, list[Path]]:
    """The image files of ``folder/<class>/``, per class in label order, each list sorted."""
    _check_classes(sorted(p.name for p in folder.iterdir() if p.is_dir()), folder)
    listing = {  # sorted by name: Path's own order for files of one folder, at half the cost
        c: sorted(
            (p for p in (folder / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        for c in CLASSES
    }
    empty = [c for c, files in listing.items() if not files]
    if empty:
        raise DataError(f"{folder}: class folders {empty} hold no PNG or JPEG images")
    return listing


def from_folders(root: Path, tried: list[str]):
    """Image folders ``root/train/<class>/*``, ``root/test/<class>/*``. The cache key hashes
    every file's contents, so that an image replaced with its size and mtime kept (``cp -p``,
    ``tar x``, ``rsync -t``) is noticed. That pass reads every file on each load: 1.6 s for the
    60,000 JPEGs (55 MB) of the offline copy, where sizes and mtimes took 0.3 s; a cache hit takes
    1.8-2.4 s instead of 1.1-1.5 s (2-core AMD EPYC shared with other jobs, files in the page
    cache)."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        tried.append(f"image folders {root / 'train'} and {root / 'test'}: not found")
        return None
    if (root / "train").resolve() == (root / "test").resolve():
        raise DataError(
            f"{root}: train and test are the same folder "
            f"({(root / 'train').resolve()}), so the test images would be trained "
            "on: make them two folders, each holding its own split"
        )
    items = {}  # split -> (label, encoded bytes, name) for each image, read once
    h = hashlib.sha256()
    for split in ("train", "test"):
        listing = _list_split(root / split)
        items[split] = []
        for label, c in enumerate(CLASSES):
            for p in listing[c]:
                blob = p.read_bytes()
                h.update(f"{split}/{c}/{p.name}:{len(blob)}:".encode())
                h.update(hashlib.sha256(blob).digest())
                items[split].append((label, blob, str(p)))

    def read():
        return tuple(_decode_files(items[split]) for split in ("train", "test"))

    return h.hexdigest(), f"CIFAR-10 image folders ({root.name}/train, {root.name}/test)", read


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def from_archives(root: Path, tried: list[str]):
    archives = {s: root / f"{s}.tar.gz" for s in ("train", "test")}
    if not all(p.is_file() for p in archives.values()):
        tried.append(f"archives {archives['train']} and {archives['test']}: not found")
        return None
    sums = root / "SHA256SUMS"
    expected = {}
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                expected[parts[1].lstrip("*")] = parts[0]
    digests = {}
    for split, path in archives.items():
        digest = sha256_file(path)
        want = expected.get(path.name)
        if want is not None and want != digest:
            raise DataError(
                f"checksum mismatch for {path}: SHA256SUMS says {want}, "
                f"the file hashes to {digest}. "
                "The archive is corrupted or was changed: download or copy it again."
            )
        digests[split] = digest
    checked = "checked against SHA256SUMS" if expected else "no SHA256SUMS to check against"
    # named by content, not by the local folder: a published page must not show build paths
    source = f"CIFAR-10 JPEG archives, train.tar.gz sha256 {digests['train'][:12]}... ({checked})"

    def read():
        return tuple(_read_archive(archives[split], split) for split in ("train", "test"))

    return digests["train"] + digests["test"], source, read


def _read_archive(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of a ``.tar.gz`` archive, which must hold ``split/<class>/*`` (at its
    top level or inside one folder), as the offline copy does. The gzip stream is read to its
    very end, so that its CRC and length are checked: a corrupted archive raises a DataError
    that says so, even without a SHA256SUMS file, instead of loading changed images or losing
    classes."""
    items = []
    found = set()
    holders = set()  # the folders that hold class folders: one, ending in ``split``
    try:
        with gzip.open(path, "rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:  # stream mode: one pass, in order
                for member in tar:
                    parts = PurePosixPath(member.name.lstrip("/")).parts
                    if not member.isfile() or len(parts) < 2:
                        continue
                    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    holders.add(parts[:-2])
                    cls = parts[-2]
                    found.add(cls)
                    if cls not in CLASSES:
                        continue
                    name = f"{path}:{member.name}"
                    items.append((CLASSES.index(cls), tar.extractfile(member).read(), name))
            # tarfile stops at the end-of-archive marker; the gzip CRC and length come after it
            while gz.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path} is corrupted or truncated ({type(e).__name__}: {e}): "
            "download or copy it again."
        ) from e
    _check_split_folder(path, split, holders)
    _check_classes(sorted(found), path)
    return _decode_files(items)


def _check_split_folder(path: Path, split: str, holders: set[tuple[str, ...]]) -> None:
    """``holders`` (the folders in the archive that hold class folders) must be one folder named
    ``split``, at the top level or inside one folder: not the other split, not both."""
    (holder,) = holders if len(holders) == 1 else (None,)
    if holder is not None and holder[-1:] == (split,) and len(holder) <= 2:
        return
    found = sorted("/".join(h) + "/" if h else "the top level" for h in holders)
    found = f"image folders under {', '.join(found)}" if found else "no image in a class folder"
    raise DataError(
        f"{path} must hold {split}/<class>/ image folders (at its top level or inside one folder), "
        f"found {found}: it holds the other split, both, or another layout. Fix: rebuild it "
        f"from the {split} folder alone, e.g. tar czf {split}.tar.gz -C <parent of {split}> {split}"
    )


def _decode_files(items: list[tuple[int, bytes, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode (label, encoded bytes, name) triples into uint8 (N, 3, 32, 32) and int64 labels."""
    images = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    for i, (label, blob, name) in enumerate(items):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL raises many types for bad files
            raise DataError(f"cannot decode image {name}: {e}. Replace or delete the file.") from e
        if arr.shape != (32, 32, 3):
            raise DataError(
                f"image {name} is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 images are 32x32"
            )
        images[i] = arr
        labels[i] = label
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _python_batches_dir(root: Path) -> Path | None:
    for d in (root / "cifar-10-batches-py", root):
        if (d / "data_batch_1").is_file() and (d / "test_batch").is_file():
            return d
    return None


def from_python_batches(root: Path, tried: list[str]):
    """The official python batches. The cache key hashes their contents (184 MB, 0.15 s per load
    on a 2-core AMD EPYC), so that a batch replaced with its size and mtime kept is noticed."""
    d = _python_batches_dir(root)
    if d is None:
        tried.append(f"official python batches in {root / 'cifar-10-batches-py'}: not found")
        return None
    files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{d} lacks {missing}: the python batches are incomplete; download them again"
        )
    key = "".join(f"{f.name}:{sha256_file(f)}\n" for f in files)

    def read():
        return _read_batches(files[:5]), _read_batches(files[5:])

    return key, "official CIFAR-10 release (python batches)", read


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that a CIFAR-10 python batch never needs."""


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch (a dict of bytes keys -> bytes, str, lists of int and
    uint8 numpy arrays) and nothing else: any global outside :data:`BATCH_GLOBALS` is refused
    before it is called, so a crafted file cannot run code, as ``pickle.load`` would let it."""

    def find_class(self, module: str, name: str):
        if (module, name) not in BATCH_GLOBALS:
            raise RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _load_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """One python batch: uint8 images (N, 3, 32, 32) and N labels."""
    try:
        with open(path, "rb") as fh:
            entry = BatchUnpickler(fh, encoding="latin1").load()
    except RefusedGlobal as e:
        raise DataError(
            f"{path} is not a CIFAR-10 python batch: it names the global {e}, which "
            "the format never needs, and was refused unrun. Delete it and download "
            "the batches again"
        ) from None
    except Exception as e:
        raise DataError(
            f"cannot read {path} ({e}): the batch is corrupted; download it again"
        ) from e
    try:
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = list(entry.get("labels", entry.get("fine_labels", [])))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(
            f"{path} is not a CIFAR-10 python batch of 32x32 RGB images ({e}): "
            "download the batches again"
        ) from e
    if len(y) != len(x):
        raise DataError(
            f"{path} holds {len(x)} images but {len(y)} labels: download the batches again"
        )
    return x, y


def _read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The python batches ``paths``, concatenated: uint8 (N, 3, 32, 32) and int64 (N,)."""
    batches = [_load_batch(p) for p in paths]
    images = np.concatenate([x for x, _ in batches])
    labels = [label for _, y in batches for label in y]
    return torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64)
