"""CIFAR-10: find it, decode it once, cache it; :class:`CifarData` holds it as tensors.

:func:`load_cifar10` returns the whole data set as uint8 tensors (N, 3, 32, 32), from the first
source it finds under ``root`` (or ``$RESNET_LAB_DATA``); :mod:`resnet_lab.cifar10_files` reads
the first three:

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

:class:`~resnet_lab.loader.CifarLoader` feeds a split to the network.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from resnet_lab.checkpoints import atomic_save
from resnet_lab.cifar10_files import (
    CLASSES,
    DataError,
    from_archives,
    from_folders,
    from_python_batches,
    not_found,
)
from resnet_lab.download import fetch

# per-channel statistics of the CIFAR-10 training set (official release), in [0, 1] units
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
TENSOR_FIELDS = (
    "train_images",
    "train_labels",
    "test_images",
    "test_labels",
    "val_images",
    "val_labels",
)
# 2: the key covers every source file in full (1 kept only part of it); 3: the key hashes the
# contents of image folders and python batches (2 trusted sizes and mtimes), and holds the digest
CACHE_VERSION = 3


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
        sizes = f"train={len(self.train_labels)}, test={len(self.test_labels)}{val}"
        return f"CifarData({sizes}, source={self.source!r})"

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> CifarData:
        """A class-balanced subset: ``train`` and ``test`` images in total (each a multiple of
        the 10 classes is exact; otherwise the first classes get one more). Deterministic by
        seed."""
        out = self
        if train is not None:
            idx = balanced_indices(self.train_labels, train, seed)
            out = replace(
                out, train_images=self.train_images[idx], train_labels=self.train_labels[idx]
            )
        if test is not None:
            idx = balanced_indices(self.test_labels, test, seed + 1)
            out = replace(out, test_images=self.test_images[idx], test_labels=self.test_labels[idx])
        note = f"subset: {len(out.train_labels)} train / {len(out.test_labels)} test, seed {seed}"
        return replace(out, notes=[*self.notes, note])

    def select_classes(self, classes) -> CifarData:
        """Only the images of ``classes`` (names or label numbers), relabelled 0..k-1 in the
        order given: ``data.select_classes(["airplane", "automobile", "ship", "truck"])``."""
        idx = [self.classes.index(c) if isinstance(c, str) else int(c) for c in classes]
        if len(set(idx)) != len(idx) or not all(0 <= i < len(self.classes) for i in idx):
            raise ValueError(
                f"classes must be distinct names from {list(self.classes)}, got {list(classes)}"
            )
        lut = torch.full((len(self.classes),), -1, dtype=torch.long)
        lut[idx] = torch.arange(len(idx))

        def pick(images, labels):
            keep = lut[labels] >= 0
            return images[keep], lut[labels[keep]]

        xtr, ytr = pick(self.train_images, self.train_labels)
        xte, yte = pick(self.test_images, self.test_labels)
        names = tuple(self.classes[i] for i in idx)
        return replace(
            self,
            train_images=xtr,
            train_labels=ytr,
            test_images=xte,
            test_labels=yte,
            classes=names,
            val_images=None,
            val_labels=None,
            notes=[*self.notes, f"classes: {', '.join(names)}"],
        )

    def split_validation(self, size: int = 5000, seed: int = 0) -> CifarData:
        """Hold out ``size`` class-balanced training images as a validation set (the paper's
        45k/5k split with the default). Deterministic by seed."""
        if not 0 < size < len(self.train_labels):
            raise ValueError(
                f"validation size must be between 1 and {len(self.train_labels) - 1}, got {size}"
            )
        val_idx = balanced_indices(self.train_labels, size, seed)
        keep = torch.ones(len(self.train_labels), dtype=torch.bool)
        keep[val_idx] = False
        return replace(
            self,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            val_images=self.train_images[val_idx],
            val_labels=self.train_labels[val_idx],
            notes=[
                *self.notes,
                f"validation split: {size} held out of the training set, seed {seed}",
            ],
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
    m = len(classes)
    per_class = [n // m + (1 if i < n % m else 0) for i in range(m)]
    picked = []
    for c, k in zip(classes.tolist(), per_class):
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise ValueError(f"class {c} has only {len(members)} images, cannot take {k}")
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(picked).sort().values


# --------------------------------------------------------------------------- loading


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
        from_env = "RESNET_LAB_DATA" in os.environ and root == default_root()
        via = " (from $RESNET_LAB_DATA)" if from_env else ""
        raise DataError(
            f"{root}{via} is a file, not a folder: point it at the folder that holds "
            "CIFAR-10 (train/ and test/, their .tar.gz archives, or "
            "cifar-10-batches-py/)"
        )
    tried: list[str] = []
    data = None
    for finder in (from_folders, from_archives, from_python_batches):
        key_and_reader = finder(root, tried)
        if key_and_reader is not None:
            key, source, reader = key_and_reader
            data = _cached(root, key, source, reader) if cache else _as_data(reader(), source)
            break
    if data is None:
        if not download:
            raise DataError(not_found(root, tried, "download=False"))
        data = _download(root, tried)
    if validation:
        data = data.split_validation(validation, seed)
    if subset is not None or test_subset is not None:
        data = data.subset(subset, test_subset, seed)
    return data


def _download(root: Path, tried: list[str]) -> CifarData:
    """The official release (torchvision's address and MD5), fetched with a progress bar and a
    deadline (``$RESNET_LAB_DOWNLOAD_MINUTES``, default 20), resumed on the next call; a
    failure is one line that says what happened and how to retry."""
    # here, not at the top: only a download needs torchvision, and it adds 1 s to import
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import extract_archive

    # the first folder we create
    top = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)
    archive = root / CIFAR10.filename
    try:
        minutes = float(os.environ.get("RESNET_LAB_DOWNLOAD_MINUTES") or 20)
        # the download target, made only now that we download
        root.mkdir(parents=True, exist_ok=True)
        print(f"CIFAR-10 not found: downloading {CIFAR10.url} (163 MB) into {root}")
        fetch(CIFAR10.url, archive, md5=CIFAR10.tgz_md5, deadline_minutes=minutes)
        extract_archive(str(archive), str(root))
    except (OSError, ValueError, tarfile.TarError) as e:
        if top is not None:
            _remove_empty_tree(root, top)  # a failed download leaves no new empty folders behind
        raise DataError(
            f"CIFAR-10 download: {e}. To retry, run this again (it resumes); or put "
            f"{CIFAR10.filename} into {root} yourself, or set RESNET_LAB_DATA to a "
            "folder that holds CIFAR-10"
        ) from e
    found = from_python_batches(root, tried)
    key, _, reader = found
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
        data = CifarData(
            blob["train_images"],
            blob["train_labels"],
            blob["test_images"],
            blob["test_labels"],
            CLASSES,
            source,
        )
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
        why = (
            e.strerror
            if isinstance(e, OSError) and e.strerror
            else ("the write failed, a full disk? " + " ".join(str(e).split()))
        )
        print(
            f"note: could not write the CIFAR-10 cache {path} ({why}); the data is loaded, but "
            "the next load decodes it again. Free space there, or set XDG_CACHE_HOME to a "
            "writable folder (used when the data folder is read-only).",
            file=sys.stderr,
        )
