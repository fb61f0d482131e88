"""CIFAR-10 as a folder of images, for torchvision's ``ImageFolder`` (chapter 6's plain program).

Online, chapter 6 reads CIFAR-10 with ``torchvision.datasets.CIFAR10``. Offline, the same code
reads the JPEG copy with ``torchvision.datasets.ImageFolder``, which wants a folder of class
folders, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``. :func:`image_folder` returns one:

- ``$RESNET_LAB_DATA`` itself (or ``root``) when it holds ``train/`` and ``test/`` image folders;
- else, when it holds the copy's ``train.tar.gz`` / ``test.tar.gz`` archives (checked against its
  ``SHA256SUMS`` by :func:`resnet_lab.cifar10_files.from_archives`), the archives unpacked once
  into the user's cache folder, in a folder named by their checksums, and renamed into place
  only when complete (an interrupted unpack leaves nothing half-written behind);
- else ``None``: there is no offline copy, and torchvision downloads the official release.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from resnet_lab.cifar10 import default_root, user_cache_dir
from resnet_lab.cifar10_files import CLASSES, IMAGE_SUFFIXES, DataError, from_archives

SPLITS = ("train", "test")


def _has_class_folders(folder: Path) -> bool:
    return all((folder / split / CLASSES[0]).is_dir() for split in SPLITS)


def image_folder(root: str | os.PathLike | None = None) -> Path | None:
    """A folder holding ``train/<class>/`` and ``test/<class>/`` images of CIFAR-10, or None
    when ``root`` (default ``$RESNET_LAB_DATA``) holds neither such folders nor their archives.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    if _has_class_folders(root):
        return root
    found = from_archives(root, tried=[])  # checks SHA256SUMS; None when there are no archives
    if found is None:
        return None
    key = found[0]
    target = user_cache_dir() / f"cifar10-images-{key[:16]}"
    if not _has_class_folders(target):
        _unpack(root, target)
    return target


def _unpack(root: Path, target: Path) -> None:
    """Unpack ``root``'s archives into ``target``: into a temporary folder beside it, renamed
    into place when every image is written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        for split in SPLITS:
            _extract_split(root / f"{split}.tar.gz", split, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process got there first: its folder is complete
            if not _has_class_folders(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_split(archive: Path, split: str, into: Path) -> None:
    """Write the images ``split/<class>/<name>`` of ``archive`` (at its top level or inside one
    folder) under ``into``. Only image files in a class folder are written, under names built
    here, so a member's path can never point outside ``into``."""
    found: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] != split:
                    continue
                cls, name = parts[-2], PurePosixPath(parts[-1])
                if cls not in CLASSES or name.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                out = into / split / cls / name.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                found.add(cls)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot unpack {archive} ({e}): copy it again, then rerun") from e
    missing = sorted(set(CLASSES) - found)
    if missing:  # ImageFolder would number the classes it finds: every label would shift
        raise DataError(
            f"{archive} has no {split}/<class>/ images of {', '.join(missing)}: "
            f"it is not CIFAR-10's {split} archive; copy it again"
        )
