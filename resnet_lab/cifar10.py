"""CIFAR-10 as uint8 tensors from image folders, their archives (the offline copy, checked against
SHA256SUMS), the python batches (unpickled with nothing run) or a download; decoded once, cached."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import sys
import tarfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from urllib.request import Request

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from resnet_lab.checkpoints import atomic_save

# the class names in label order (sorted, as ImageFolder orders class folders)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# per-channel statistics of the CIFAR-10 training set (official release), in [0, 1] units
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SPLITS = ("train", "test")
TENSOR_FIELDS = tuple(f"{s}_{t}" for s in (*SPLITS, "val") for t in ("images", "labels"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# all a python batch may name: numpy's arrays (numpy 1 pickles numpy.core, numpy 2 numpy._core)
ARRAYS = {("numpy", "ndarray"), ("numpy", "dtype")}
BATCH_GLOBALS = ARRAYS | {(f"numpy.{c}.multiarray", "_reconstruct") for c in ("core", "_core")}
CACHE_VERSION = 3  # the key hashes every source file's contents; the file holds the digest
STALL_SECONDS = 60  # a download that receives nothing for this long fails
HOLDS = "train/ and test/ image folders, their .tar.gz archives, or python batches"
DIGEST_FILE = ".sha256"  # in a folder image_folder() unpacked: the digest of its images


class DataError(ValueError):
    """The data could not be found or read; the message names the problem and the fix."""

    def _render_traceback_(self) -> list[str]:  # IPython: the message alone, no traceback
        return [f"DataError: {self}"]


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
    # content_digest() once computed: not an __init__ argument, so that replace() hashes anew
    digest: str = field(default="", init=False, repr=False, compare=False)

    def __repr__(self) -> str:  # wrapped to fit a page's column of 77 characters
        val = f", val={len(self.val_labels)}" if self.val_labels is not None else ""
        head = f"CifarData(train={len(self.train_labels)}, test={len(self.test_labels)}{val}"
        head, tail = f"{head}, digest={self.content_digest()[:12]!r},", f"source={self.source!r})"
        return head + ("\n          " if len(head + tail) >= 77 else " ") + tail

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> CifarData:
        """A class-balanced subset (see :func:`balanced_indices`), deterministic by seed."""
        out = {}
        for split, n, s in (("train", train, seed), ("test", test, seed + 1)):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            idx = balanced_indices(y, n, s) if n is not None else slice(None)
            out |= {f"{split}_images": x[idx], f"{split}_labels": y[idx]}
        sizes = f"{len(out['train_labels'])} train / {len(out['test_labels'])} test"
        return replace(self, **out, notes=[*self.notes, f"subset: {sizes}, seed {seed}"])

    def select_classes(self, classes) -> CifarData:
        """Only the images of ``classes`` (names or label numbers), relabelled 0..k-1 in the
        order given: ``data.select_classes(["airplane", "automobile", "ship", "truck"])``."""
        idx = [self.classes.index(c) if isinstance(c, str) else int(c) for c in classes]
        if len(set(idx)) != len(idx) or not all(0 <= i < len(self.classes) for i in idx):
            raise ValueError(f"classes must be distinct names from {self.classes}, got {classes!r}")
        lut = torch.full((len(self.classes),), -1, dtype=torch.long)
        lut[idx] = torch.arange(len(idx))
        names, out = tuple(self.classes[i] for i in idx), {"val_images": None, "val_labels": None}
        for split in SPLITS:
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            out |= {f"{split}_images": x[lut[y] >= 0], f"{split}_labels": lut[y[lut[y] >= 0]]}
        note = f"classes: {', '.join(names)}"
        return replace(self, **out, classes=names, notes=[*self.notes, note])

    def split_validation(self, size: int = 5000, seed: int = 0) -> CifarData:
        """Hold out ``size`` balanced training images for validation (5000: the paper's 45k/5k)."""
        x, y = self.train_images, self.train_labels
        if not 0 < size < len(y):
            raise ValueError(f"validation size must be between 1 and {len(y) - 1}, got {size}")
        val = balanced_indices(y, size, seed)
        keep = torch.ones(len(y), dtype=torch.bool).index_fill_(0, val, False)
        out = {"train_images": x[keep], "train_labels": y[keep], "val_images": x[val]}
        note = f"validation split: {size} held out of the training set, seed {seed}"
        return replace(self, **out, val_labels=y[val], notes=[*self.notes, note])

    def content_digest(self) -> str:
        """sha256 (hex) of the class names and each split: equal digests, equal data (0.17 s)."""
        if not self.digest:
            h = hashlib.sha256(repr(tuple(self.classes)).encode())
            for name in TENSOR_FIELDS:
                if (t := getattr(self, name)) is None:
                    h.update(f"{name}: none\n".encode())
                    continue
                t = t.detach().cpu().contiguous()
                h.update(f"{name}: {t.dtype} {tuple(t.shape)}\n".encode())
                h.update(t.numpy().data)  # a view of the tensor's memory, not a copy
            self.digest = h.hexdigest()
        return self.digest

    def describe(self) -> str:
        """For captions, records and resume's check (:func:`same_data`), in lines of 77."""
        extra = "".join(f"; {note}" for note in self.notes)
        sizes = f"{len(self.train_labels):,} train / {len(self.test_labels):,} test images"
        line = f"{self.source} ({sizes}{extra}; digest {self.content_digest()[:12]})"
        return textwrap.fill(line, 77, subsequent_indent="  ", break_on_hyphens=False)


def same_data(saved: str, ours: str) -> bool:
    """Whether two :meth:`CifarData.describe` name the same data: by digest, else by sizes."""
    saved, ours = (" ".join(s.split()) for s in (saved, ours))
    a, b = (re.search(r"; digest ([0-9a-f]{12})[0-9a-f]*\)$", s) for s in (saved, ours))
    if a and b:
        return a[1] == b[1]
    ours = ours[: b.start()] + ")" if b else ours
    name = re.compile(r"^.*? (?=\(\d[\d,]* train / [\d,]* test images)")  # the source's name
    return name.sub("", saved) == name.sub("", ours)


def balanced_indices(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` sorted indices, spread evenly over the classes (the first get one more)."""
    classes = torch.unique(labels)
    if n < len(classes) or n > len(labels):
        raise ValueError(f"subset size must be between {len(classes)} and {len(labels)}, got {n}")
    g, m, picked = torch.Generator().manual_seed(seed), len(classes), []
    for i, c in enumerate(classes.tolist()):
        members, k = torch.nonzero(labels == c).flatten(), n // m + (1 if i < n % m else 0)
        if k > len(members):
            raise ValueError(f"class {c} has only {len(members)} images, cannot take {k}")
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(picked).sort().values


def shown(path: str | os.PathLike) -> str:
    """``path`` named from ``$RESNET_LAB_DATA``, ``$XDG_CACHE_HOME`` or ``~``, never a home."""
    env = {f"${v}": os.environ.get(v, "").strip() for v in ("RESNET_LAB_DATA", "XDG_CACHE_HOME")}
    for name, base in [*env.items(), ("~", Path.home())]:
        if base and Path(path).is_relative_to(base := Path(base).expanduser()):
            return Path(name, Path(path).relative_to(base)).as_posix()
    return str(path)


def load_cifar10(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    validation: int | None = None,
    seed: int = 0,
) -> CifarData:
    """CIFAR-10 from the first source in ``root`` (default :func:`data_root`), or downloaded into
    it; balanced subsets, ``validation`` images held out of training (5000: the paper's 45k/5k)."""
    root = data_root(root)
    if not (found := _from_folders(root) or _from_archives(root) or _from_batches(root)):
        if not download:
            fix = "point RESNET_LAB_DATA (or root=) at a folder that does, or allow download=True"
            raise DataError(f"CIFAR-10 not found in {shown(root)}: it holds no {HOLDS}. Fix: {fix}")
        found = _download(root)
    data = _cached(_cache_dir(root), *found)
    data = data.split_validation(validation, seed) if validation else data
    has_subset = subset is not None or test_subset is not None
    return data.subset(subset, test_subset, seed) if has_subset else data


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$RESNET_LAB_DATA``, else ``<user cache>/cifar10``: a named one exists."""
    env = os.environ.get("RESNET_LAB_DATA", "")
    if env and not env.strip():
        raise DataError(f"RESNET_LAB_DATA is blank ({env!r}): unset it, or name the data folder")
    named = f"{root}" if root is not None else (f"RESNET_LAB_DATA={env}" if env else None)
    path = Path(root if root is not None else env or _cache_dir(None) / "cifar10").expanduser()
    if named is not None and not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        fix = "name the folder that holds it, or make the folder to download it into"
        raise DataError(f"CIFAR-10 not found: {named} {what}; {fix}")
    return path


def _cache_dir(root: Path | None) -> Path:
    """Beside the data, else in the user's cache (root passes access() on read-only folders)."""
    if root is not None and os.access(root, os.W_OK) and root.stat().st_mode & 0o200:
        return root / ".resnet_lab_cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet_lab"


def _from_folders(root: Path):
    """Image folders, listed by torchvision; the key hashes every file (1.6 s for 60,000 JPEGs)."""
    if not all((root / s).is_dir() for s in SPLITS):
        return None
    if (root / "train").resolve() == (root / "test").resolve():
        why = "so the test images would be trained on: make them two folders"
        raise DataError(f"{shown(root)}: train and test are the same folder, {why}")
    from torchvision.datasets.folder import make_dataset  # 1 s to import: only when needed

    items, h = [], hashlib.sha256()
    for split, where in ((s, root / s) for s in SPLITS):
        try:  # only the class folders count (not .ipynb_checkpoints); each must hold images
            files = make_dataset(where, dict(zip(CLASSES, range(10))), IMAGE_SUFFIXES)
        except FileNotFoundError as e:
            raise DataError(f"{shown(where)} needs a folder of images per class: {e}") from None
        items.append([(label, Path(path).read_bytes(), path) for path, label in files])
        for label, blob, path in items[-1]:
            h.update(f"{split}/{CLASSES[label]}/{Path(path).name}:{len(blob)}:".encode())
            h.update(hashlib.sha256(blob).digest())
    return h.hexdigest(), "CIFAR-10 image folders", lambda: [t for it in items for t in _decode(it)]


def _from_archives(root: Path):
    """The folders' archives; a SHA256SUMS beside them must list both (two copies are refused)."""
    archives = [root / f"{s}.tar.gz" for s in SPLITS]
    if not all(p.is_file() for p in archives):
        return None
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in archives]
    if (sums := root / "SHA256SUMS").is_file():
        listed = {w[-1].lstrip("*"): w[0] for w in map(str.split, sums.read_text().splitlines())}
        for path, digest in zip(archives, digests):
            if (want := listed.get(path.name, "no line")) != digest:
                why = f"SHA256SUMS says {want[:12]}, the file hashes to {digest[:12]}"
                fix = "it is damaged or from another copy: copy the archives and sums again"
                raise DataError(f"checksum mismatch for {shown(path)}: {why}; {fix}")
    source = "CIFAR-10 JPEG copy" + ("" if sums.is_file() else ", no SHA256SUMS")
    split_items = [lambda s=s, p=p: _read_archive(p, s) for s, p in zip(SPLITS, archives)]
    return "".join(digests), source, lambda: [t for it in split_items for t in _decode(it())]


def _read_archive(path: Path, split: str) -> list[tuple[int, bytes, str]]:
    """(label, bytes, name) of each image of a .tar.gz of ``[folder/]split/<class>/*``; checked."""
    items, holders = [], set()  # holders: the folders that hold class folders
    try:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:  # stream mode: one pass, in archive order
                *holder, cls, name = ("", "", *PurePosixPath(member.name.lstrip("/")).parts)
                if member.isfile() and cls and name.lower().endswith(IMAGE_SUFFIXES):
                    holders.add("/".join(holder[2:]))
                    if cls in CLASSES:
                        blob = tar.extractfile(member).read()
                        items.append((CLASSES.index(cls), blob, f"{path.name}:{member.name}"))
            while gz.read(1 << 20):  # the gzip CRC and length follow the tar's end
                pass
    except Exception as e:  # tarfile, gzip, zlib and the OS raise many types
        raise DataError(f"{shown(path)} is corrupted or truncated ({e}): copy it again") from e
    if len(holders) != 1 or not re.fullmatch(f"([^/]+/)?{split}", min(holders)):
        where = ", ".join(sorted(h + "/" if h else "the top level" for h in holders)) or "none"
        fix = f"Fix: tar czf {split}.tar.gz -C <parent of {split}> {split}"
        raise DataError(f"{shown(path)} must hold {split}/<class>/, found {where}. {fix}")
    if missing := sorted(set(CLASSES) - {CLASSES[label] for label, _, _ in items}):
        raise DataError(f"{shown(path)} lacks the class folders {missing}: copy it again")
    return items


def image_folder(root: str | os.PathLike | None = None) -> Path | None:
    """``train/<class>/*`` and ``test/<class>/*`` images for torchvision's ImageFolder: ``root``
    (default :func:`data_root`) if it holds them, else its archives, checked and unpacked once
    into the cache (named by their checksums, renamed into place when whole, checked against
    its digest on every call); None when ``root`` holds neither (no offline copy)."""
    root = data_root(root)
    if (whole := all((root / s).is_dir() for s in SPLITS)) or not (found := _from_archives(root)):
        return root if whole else None
    target = (
        _cache_dir(root) / f"cifar10-images-{hashlib.sha256(found[0].encode()).hexdigest()[:8]}"
    )
    with contextlib.suppress(OSError, DataError, TypeError):  # TypeError: a split folder is gone
        if (target / DIGEST_FILE).read_text() == _from_folders(target)[0]:
            return target
    if target.exists():
        print(f"note: unpacking the damaged {shown(target)} again", file=sys.stderr)
    tmp = target.with_name(f".unpacking-{os.getpid()}-{target.name}")
    try:
        for split in SPLITS:  # names made here from checked parts: nothing lands elsewhere
            for label, blob, name in _read_archive(root / f"{split}.tar.gz", split):
                (tmp / split / CLASSES[label]).mkdir(parents=True, exist_ok=True)
                (tmp / split / CLASSES[label] / PurePosixPath(name).name).write_bytes(blob)
        (tmp / DIGEST_FILE).write_text(_from_folders(tmp)[0])
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except OSError as e:  # unless another process renamed its whole copy into place first
        if not (target / DIGEST_FILE).is_file():
            fix = "free 250 MB there, or set XDG_CACHE_HOME to a writable folder"
            raise DataError(f"cannot unpack CIFAR-10 into {shown(target)} ({e}): {fix}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _decode(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(label, encoded bytes, name) -> uint8 images (N, 3, 32, 32), int64 labels (N,)."""
    images = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for i, (_, blob, name) in enumerate(items):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                images[i] = np.asarray(im.convert("RGB"))
        except Exception as e:  # PIL raises many types for bad files; numpy a ValueError
            raise DataError(f"cannot read {shown(name)} as 32x32 RGB ({e}): replace it") from e
    labels = torch.tensor([label for label, _, _ in items], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _from_batches(root: Path):
    """The official python batches. The key hashes their contents (184 MB, 0.15 s)."""
    d = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
    if not any(f.is_file() for f in files):
        return None
    if missing := [f.name for f in files if not f.is_file()]:
        raise DataError(f"{shown(d)} lacks {missing}: the batches are incomplete; fetch them again")
    key = "".join(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}\n" for f in files)
    return key, "official CIFAR-10 release", lambda: [*_batches(files[:5]), *_batches(files[5:])]


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # refused before it is called: nothing runs
        if (module, name) not in BATCH_GLOBALS:
            raise DataError(f"it names the global {module}.{name}, never needed: refused")
        return super().find_class(module, name)


def _batches(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The python batches ``files``: uint8 images (N, 3, 32, 32), int64 labels (N,)."""
    images, labels = [], []
    for path in files:
        try:
            with open(path, "rb") as fh:
                entry = _BatchUnpickler(fh, encoding="latin1").load()
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(entry["labels"])
            if len(labels) != sum(map(len, images)):
                raise ValueError("it holds more images than labels, or fewer")
        except Exception as e:  # a refused global, a broken pickle, arrays of the wrong shape
            why = f"{shown(path)} is not a CIFAR-10 python batch ({e}); nothing in it ran"
            raise DataError(f"{why}. Delete it and download the batches again") from None
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _download(root: Path):
    """The official release (torchvision's address, MD5 and unpacking), kept and resumed when
    nothing comes for STALL_SECONDS or ``$RESNET_LAB_DOWNLOAD_MINUTES`` (default 20) pass."""
    from torchvision.datasets import CIFAR10  # 1 s to import: only a download needs it
    from torchvision.datasets.utils import check_md5, extract_archive

    raw = os.environ.get("RESNET_LAB_DOWNLOAD_MINUTES", "20")
    if not re.fullmatch(r"\s*\d*\.?\d+\s*", raw) or not float(raw) > 0:
        fix = "set it to a number above 0, or unset it (20)"
        raise DataError(f"RESNET_LAB_DOWNLOAD_MINUTES={raw!r} is not a number of minutes: {fix}")
    part, stop = root / f"{CIFAR10.filename}.part", time.monotonic() + 60 * float(raw)
    print(f"CIFAR-10 not found: downloading the official release (163 MB) into {shown(root)}")
    try:
        start = part.stat().st_size if part.is_file() else 0
        rest = {"Range": f"bytes={start}-"} if start else {}
        with urllib.request.urlopen(Request(CIFAR10.url, headers=rest), timeout=STALL_SECONDS) as r:
            start *= r.status == 206  # a server that ignores the range sends it all
            size = start + int(r.headers.get("Content-Length") or 0)
            bar = tqdm(total=size, initial=start, unit="B", unit_scale=True, desc="CIFAR-10")
            with open(part, "ab" if start else "wb") as f, bar:
                while chunk := r.read(1 << 16):
                    bar.update(f.write(chunk))
                    if time.monotonic() > stop and bar.n < size:
                        raise OSError(f"stopped after {raw.strip()} min at {bar.n >> 20} MB")
        if not check_md5(part, CIFAR10.tgz_md5):
            part.unlink()
            raise OSError("it arrived damaged (not the published MD5) and was deleted")
        extract_archive(str(part.replace(root / CIFAR10.filename)), str(root))
    except (OSError, tarfile.TarError) as e:
        why = f"nothing came for {STALL_SECONDS} s" if "timed out" in f"{e}" else e
        fix = f"Run it again (it resumes); or put {CIFAR10.filename} into {shown(root)}"
        raise DataError(f"CIFAR-10 download: {' '.join(f'{why}'.split())}. {fix}") from e
    return _from_batches(root)  # the MD5 proves the archive holds them


def _cached(cache: Path, key: str, source: str, read) -> CifarData:
    """The data for ``key`` from ``cache`` if it matches the digest it holds, else read, cached."""
    path = cache / f"cifar10-v{CACHE_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"
    if path.is_file():
        try:  # mmap: the hash reads the file's pages once, with no copy
            blob = torch.load(path, weights_only=True, mmap=True)
            data = CifarData(*(blob[k] for k in TENSOR_FIELDS[:4]), source=source)
            if data.content_digest() == blob["digest"]:
                return data
            why = "its images do not match its digest"
        except Exception as e:  # a truncated or foreign file
            why = " ".join(f"{type(e).__name__}: {e}".split())[:60]
        print(f"note: rebuilding the damaged CIFAR-10 cache {shown(path)} ({why})", file=sys.stderr)
    data = CifarData(*read(), source=source)
    blob = {k: getattr(data, k) for k in TENSOR_FIELDS[:4]} | {"digest": data.content_digest()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(blob, path)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError on a full disk
        note = f"note: could not write the CIFAR-10 cache {shown(path)} ({e}); it loads again"
        print(f"{' '.join(note.split())}: set XDG_CACHE_HOME to a writable folder", file=sys.stderr)
    return data
