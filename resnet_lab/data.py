"""CIFAR-10: find it, decode it once, cache it, and feed it fast.

:func:`load_cifar10` returns the whole data set as uint8 tensors (N, 3, 32, 32), from the first
source it finds under ``root`` (or ``$RESNET_LAB_DATA``):

1. a folder of images in class subfolders: ``train/<class>/*``, ``test/<class>/*`` (PNG or JPEG);
2. the ``train.tar.gz`` / ``test.tar.gz`` archives of such a folder, checked against a
   ``SHA256SUMS`` file when one is present (the offline copy in ``shared/data/cifar10-jpeg``);
3. the official python batches, as torchvision stores them (``cifar-10-batches-py/``);
4. torchvision's download of the official release (its archive's MD5 is checked by torchvision).

Decoded tensors are cached, keyed by a checksum of the source's contents, beside the data or,
where that folder is read-only, in the user's cache folder. A second load of the offline copy
takes 0.1-0.3 s from its archives, about 2 s from its images unpacked (each file is read to hash
it). :meth:`CifarData.describe` ends with a digest of every image and label, made once when the
cache is built, so that a resume on other images is refused.

:class:`CifarLoader` holds a split as one tensor on the training device and does random
crop (4-pixel padding) and horizontal flip as batched tensor ops: no PIL in the training loop.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import stat
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from resnet_lab.checkpoints import atomic_save
from resnet_lab.device import pick_device

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# per-channel statistics of the CIFAR-10 training set (official release), in [0, 1] units
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TENSOR_FIELDS = ("train_images", "train_labels", "test_images", "test_labels",
                 "val_images", "val_labels")
# 2: the key covers every source file in full (1 kept only part of it); 3: the key hashes the
# contents of image folders and python batches (2 trusted sizes and mtimes), and holds the digest
CACHE_VERSION = 3
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


@dataclass
class CifarData:
    """CIFAR-10 as tensors. Images are uint8 (N, 3, 32, 32), labels int64 (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES
    source: str = ""
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    # content_digest(), kept once computed; not an __init__ argument, so that every copy made by
    # dataclasses.replace() (subset, select_classes, split_validation) hashes what it holds
    digest: str = field(default="", init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        val = f", val={len(self.val_labels)}" if self.val_labels is not None else ""
        return f"CifarData(train={len(self.train_labels)}, test={len(self.test_labels)}{val}, source={self.source!r})"

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "CifarData":
        """A class-balanced subset: ``train`` and ``test`` images in total (each a multiple of
        the 10 classes is exact; otherwise the first classes get one more). Deterministic by seed."""
        out = self
        if train is not None:
            idx = balanced_indices(self.train_labels, train, seed)
            out = replace(out, train_images=self.train_images[idx], train_labels=self.train_labels[idx])
        if test is not None:
            idx = balanced_indices(self.test_labels, test, seed + 1)
            out = replace(out, test_images=self.test_images[idx], test_labels=self.test_labels[idx])
        note = f"subset: {len(out.train_labels)} train / {len(out.test_labels)} test, seed {seed}"
        return replace(out, notes=[*self.notes, note])

    def select_classes(self, classes) -> "CifarData":
        """Only the images of ``classes`` (names or label numbers), relabelled 0..k-1 in the
        order given: ``data.select_classes(["airplane", "automobile", "ship", "truck"])``."""
        idx = [self.classes.index(c) if isinstance(c, str) else int(c) for c in classes]
        if len(set(idx)) != len(idx) or not all(0 <= i < len(self.classes) for i in idx):
            raise ValueError(f"classes must be distinct names from {list(self.classes)}, got {list(classes)}")
        lut = torch.full((len(self.classes),), -1, dtype=torch.long)
        lut[idx] = torch.arange(len(idx))

        def pick(images, labels):
            keep = lut[labels] >= 0
            return images[keep], lut[labels[keep]]

        xtr, ytr = pick(self.train_images, self.train_labels)
        xte, yte = pick(self.test_images, self.test_labels)
        names = tuple(self.classes[i] for i in idx)
        return replace(self, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte, classes=names,
                       val_images=None, val_labels=None, notes=[*self.notes, f"classes: {', '.join(names)}"])

    def split_validation(self, size: int = 5000, seed: int = 0) -> "CifarData":
        """Hold out ``size`` class-balanced training images as a validation set (the paper's
        45k/5k split with the default). Deterministic by seed."""
        if not 0 < size < len(self.train_labels):
            raise ValueError(f"validation size must be between 1 and {len(self.train_labels) - 1}, got {size}")
        val_idx = balanced_indices(self.train_labels, size, seed)
        keep = torch.ones(len(self.train_labels), dtype=torch.bool)
        keep[val_idx] = False
        return replace(
            self,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            val_images=self.train_images[val_idx],
            val_labels=self.train_labels[val_idx],
            notes=[*self.notes, f"validation split: {size} held out of the training set, seed {seed}"],
        )

    def content_digest(self) -> str:
        """sha256 (hex) of the class names and every image and label held (train, test and
        validation): equal digests, equal data. Hashed on first use, then kept."""
        if not self.digest:
            self.digest = content_digest(self)
        return self.digest

    def describe(self) -> str:
        """One line for figure captions and for resume's check: source, split sizes, subset
        notes and the first 12 digits of :meth:`content_digest`."""
        extra = "".join(f"; {note}" for note in self.notes)
        sizes = f"{len(self.train_labels):,} train / {len(self.test_labels):,} test images"
        return f"{self.source} ({sizes}{extra}; digest {self.content_digest()[:12]})"


def content_digest(data: CifarData) -> str:
    """sha256 (hex) over ``data``'s class names, then each split's dtype, shape and bytes.
    0.15-0.2 s for the 60,000 images of CIFAR-10 (2-core AMD EPYC)."""
    h = hashlib.sha256(repr(tuple(data.classes)).encode())
    for name in TENSOR_FIELDS:
        t = getattr(data, name)
        if t is None:
            h.update(f"{name}: none\n".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}: {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.numpy().data)  # a view of the tensor's memory, not a copy
    return h.hexdigest()


def balanced_indices(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices spread evenly over the classes present in ``labels``, sorted."""
    classes = torch.unique(labels)
    if n < len(classes) or n > len(labels):
        raise ValueError(f"subset size must be between {len(classes)} and {len(labels)}, got {n}")
    g = torch.Generator().manual_seed(seed)
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes.tolist(), per_class):
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise ValueError(f"class {c} has only {len(members)} images, cannot take {k}")
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(picked).sort().values


# --------------------------------------------------------------------------- finding data


def default_root() -> Path:
    """``$RESNET_LAB_DATA`` when set, else ``<user cache>/resnet_lab/cifar10``."""
    env = os.environ.get("RESNET_LAB_DATA")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "cifar10"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "resnet_lab"


def load_cifar10(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    validation: int | None = None,
    seed: int = 0,
    cache: bool = True,
) -> CifarData:
    """Load CIFAR-10 from the first source found under ``root`` (see the module docstring).

    ``subset``/``test_subset``: class-balanced subsets of that many images;
    ``validation``: hold out that many training images (5000 gives the paper's 45k/5k).
    Raises :class:`DataError` listing what was tried when nothing is found.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    if root.is_file():
        via = " (from $RESNET_LAB_DATA)" if "RESNET_LAB_DATA" in os.environ and root == default_root() else ""
        raise DataError(f"{root}{via} is a file, not a folder: point it at the folder that holds "
                        "CIFAR-10 (train/ and test/, their .tar.gz archives, or cifar-10-batches-py/)")
    tried: list[str] = []
    data = None
    for finder in (_from_folders, _from_archives, _from_python_batches):
        key_and_reader = finder(root, tried)
        if key_and_reader is not None:
            key, source, reader = key_and_reader
            data = _cached(root, key, source, reader) if cache else _as_data(reader(), source)
            break
    if data is None:
        if not download:
            raise DataError(_not_found(root, tried, "download=False"))
        data = _download(root, tried)
    if validation:
        data = data.split_validation(validation, seed)
    if subset is not None or test_subset is not None:
        data = data.subset(subset, test_subset, seed)
    return data


def _not_found(root: Path, tried: list[str], why: str) -> str:
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
            f"missing {missing}, unexpected {extra}. Fix the folder names (or restore the missing ones)."
        )


def _list_split(folder: Path) -> dict[str, list[Path]]:
    """The image files of ``folder/<class>/``, per class in label order, each list sorted."""
    _check_classes(sorted(p.name for p in folder.iterdir() if p.is_dir()), folder)
    listing = {  # sorted by name: Path's own order for files of one folder, at half the cost
        c: sorted((p for p in (folder / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.name)
        for c in CLASSES
    }
    empty = [c for c, files in listing.items() if not files]
    if empty:
        raise DataError(f"{folder}: class folders {empty} hold no PNG or JPEG images")
    return listing


def _from_folders(root: Path, tried: list[str]):
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
        raise DataError(f"{root}: train and test are the same folder "
                        f"({(root / 'train').resolve()}), so the test images would be trained "
                        "on: make them two folders, each holding its own split")
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


def _from_archives(root: Path, tried: list[str]):
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
                f"checksum mismatch for {path}: SHA256SUMS says {want}, the file hashes to {digest}. "
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
            f"{path} is corrupted or truncated ({type(e).__name__}: {e}): download or copy it again."
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
    from PIL import Image

    images = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    for i, (label, blob, name) in enumerate(items):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL raises many types for bad files
            raise DataError(f"cannot decode image {name}: {e}. Replace or delete the file.") from e
        if arr.shape != (32, 32, 3):
            raise DataError(f"image {name} is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 images are 32x32")
        images[i] = arr
        labels[i] = label
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _python_batches_dir(root: Path) -> Path | None:
    for d in (root / "cifar-10-batches-py", root):
        if (d / "data_batch_1").is_file() and (d / "test_batch").is_file():
            return d
    return None


def _from_python_batches(root: Path, tried: list[str]):
    """The official python batches. The cache key hashes their contents (184 MB, 0.15 s per load
    on a 2-core AMD EPYC), so that a batch replaced with its size and mtime kept is noticed."""
    d = _python_batches_dir(root)
    if d is None:
        tried.append(f"official python batches in {root / 'cifar-10-batches-py'}: not found")
        return None
    files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{d} lacks {missing}: the python batches are incomplete; download them again")
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
        raise DataError(f"{path} is not a CIFAR-10 python batch: it names the global {e}, which "
                        "the format never needs, and was refused unrun. Delete it and download "
                        "the batches again") from None
    except Exception as e:
        raise DataError(f"cannot read {path} ({e}): the batch is corrupted; "
                        "download it again") from e
    try:
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = list(entry.get("labels", entry.get("fine_labels", [])))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch of 32x32 RGB images ({e}): "
                        "download the batches again") from e
    if len(y) != len(x):
        raise DataError(f"{path} holds {len(x)} images but {len(y)} labels: "
                        "download the batches again")
    return x, y


def _read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The python batches ``paths``, concatenated: uint8 (N, 3, 32, 32) and int64 (N,)."""
    batches = [_load_batch(p) for p in paths]
    images = np.concatenate([x for x, _ in batches])
    labels = [label for _, y in batches for label in y]
    return torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64)


def _download(root: Path, tried: list[str]) -> CifarData:
    import torchvision

    top = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)  # first folder we create
    try:
        root.mkdir(parents=True, exist_ok=True)  # the download target, made only now that we download
        # torchvision checks the archive's MD5 against the published one before extracting
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as e:
        if top is not None:
            _remove_empty_tree(root, top)  # a failed download leaves no new empty folders behind
        tried.append(f"torchvision download into {root}: {type(e).__name__}: {e}")
        raise DataError(_not_found(root, tried, "the download failed")) from e
    found = _from_python_batches(root, tried)
    key, source, reader = found
    return _cached(root, key, "official CIFAR-10 release (downloaded by torchvision)", reader)


def _remove_empty_tree(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top``, as long as they are empty."""
    try:
        while folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            if folder == top:
                break
            folder = folder.parent
    except OSError:
        pass


# --------------------------------------------------------------------------- cache


def _writable(folder: Path) -> bool:
    """Whether we may write in ``folder``. Checks the owner's write bit as well as access(),
    because root passes access() on folders that are meant to be read-only (shared data)."""
    try:
        st = folder.stat()
    except OSError:
        return False
    return bool(st.st_mode & stat.S_IWUSR) and os.access(folder, os.W_OK)


def _cache_path(root: Path, key: str) -> Path:
    """Beside the data when its folder is writable, else in the user's cache folder."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # every byte of the key counts
    name = f"cifar10-v{CACHE_VERSION}-{digest}.pt"
    if _writable(root):
        return root / ".resnet_lab_cache" / name
    return user_cache_dir() / name


def _as_data(splits, source: str) -> CifarData:
    (xtr, ytr), (xte, yte) = splits
    return CifarData(xtr, ytr, xte, yte, CLASSES, source)


def _cached(root: Path, key: str, source: str, reader) -> CifarData:
    """The data for ``key``: from its cache file when there is a readable one, else from
    ``reader()``, then cached with its content digest (hashed here, once)."""
    path = _cache_path(root, key)
    data = _read_cache(path, source) if path.is_file() else None
    if data is not None:
        return data
    data = _as_data(reader(), source)
    blob = {k: getattr(data, k) for k in TENSOR_FIELDS[:4]}  # a fresh load has no validation split
    blob["digest"] = data.content_digest()
    _write_cache(blob, path)
    return data


def _read_cache(path: Path, source: str) -> CifarData | None:
    """The CifarData cached in ``path``, its digest read back too; None for a broken cache."""
    try:
        blob = torch.load(path, weights_only=True)
        data = CifarData(blob["train_images"], blob["train_labels"], blob["test_images"],
                         blob["test_labels"], CLASSES, source)
        data.digest = str(blob["digest"])
    except Exception:
        return None  # a stale or broken cache is simply rebuilt
    return data


def _write_cache(blob: dict, path: Path) -> None:
    """Save ``blob`` atomically to ``path``. The cache is only an optimisation: a failed write
    (a full disk, a read-only home) prints one line on stderr and the load goes on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(blob, path)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError on a full disk
        why = e.strerror if isinstance(e, OSError) and e.strerror else (
            "the write failed, a full disk? " + " ".join(str(e).split()))
        print(f"note: could not write the CIFAR-10 cache {path} ({why}); the data is loaded, but "
              "the next load decodes it again. Free space there, or set XDG_CACHE_HOME to a "
              "writable folder (used when the data folder is read-only).", file=sys.stderr)


# --------------------------------------------------------------------------- loader


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised with the CIFAR-10 statistics."""
    mean = torch.tensor(MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (images.to(dtype) - mean) / std


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool | torch.Tensor = True
) -> torch.Tensor:
    """Each image its own random crop (after ``pad`` pixels of zero padding) and its own
    horizontal flip with probability 1/2, as one batched gather. (B, C, H, W) -> same shape.
    ``flip`` may instead be a bool tensor (B,) saying which images to mirror.

    The randomness comes from ``generator`` (on the CPU), so results are deterministic by seed
    on every device.
    """
    b, c, h, w = images.shape
    dev = images.device
    if pad:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        images = padded[bi, ci, rows, cols]  # (B, C, H, W)
    if not isinstance(flip, torch.Tensor):  # True: each image its own coin
        flip = (torch.rand(b, generator=generator) < 0.5) if flip else None
    if flip is not None:
        images = torch.where(flip.to(dev)[:, None, None, None], images.flip(3), images)
    return images


class CifarLoader:
    """Batches from tensors held on the target device; augmentation as batched tensor ops.

    ``train=True``: reshuffled every epoch, each image its own random crop (4-pixel padding)
    and flip. ``train=False``: fixed order, no augmentation. Iterating yields normalised float
    images (B, 3, 32, 32) and int64 labels (B,), on ``device``. Shuffling and augmentation are
    seeded by (seed, epoch), so an epoch is reproducible on its own (that is what makes an
    interrupted-and-resumed run identical to an uninterrupted one).

    ``flip="alternate"``: alternating flips (Jordan 2024, airbench): each image gets one random
    bit for the whole run; even epochs mirror the images whose bit is set, odd epochs the others,
    so every image is seen both ways in any two consecutive epochs. ``size`` (set between
    epochs) trains on images resized to ``size`` x ``size`` pixels: progressive resizing.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 512,
        *,
        train: bool = True,
        device: str | torch.device = "auto",
        seed: int = 0,
        crop_pad: int = 4,
        flip: bool | str = True,
        drop_last: bool | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if flip not in (True, False, "alternate"):
            raise ValueError(f"flip must be True, False or 'alternate', got {flip!r}")
        self.device = pick_device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.crop_pad = crop_pad if train else 0
        self.flip = flip if train else False
        self.size = images.shape[-1]  # side of the images yielded (training: progressive resizing)
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.dtype = dtype
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g).to(self.device) if self.train else None
        flip = self.flip
        if flip == "alternate":  # one bit per image for the whole run, inverted every other epoch
            bits = torch.rand(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 999_999)) < 0.5
            flip = bits.to(self.device) ^ bool(self.epoch % 2)
        if self.train:
            self.epoch += 1
        for i in range(len(self)):
            if order is None:
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                x, y = self.images[sl], self.labels[sl]
            else:
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.crop_pad or self.flip:
                batch_flip = flip[idx] if isinstance(flip, torch.Tensor) else flip
                x = random_crop_flip(x, g, self.crop_pad, batch_flip)
            x = normalize(x, self.dtype)
            if self.size != x.shape[-1]:
                x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                    antialias=True, align_corners=False)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`: float images back to [0, 1], for plotting."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)
