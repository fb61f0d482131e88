"""Run folders: the lab's rules for where a run trains, around the core's ``train``.

A *run folder* (``runs/<run>/``) holds a run's ``checkpoint.pt`` and ``history.json`` while it
trains. :func:`train_in_folder` is :func:`resnet_lab.train.train` under these rules, which the
command line and the experiments use: :func:`run_folder` checks the folder arguments before
anything is done; :func:`claim` holds the folder's lock while the run trains and refuses to
replace another run (a folder that holds one needs ``resume`` or ``overwrite``, and ``resume``
needs a checkpoint).

The lock, :class:`RunLock`, is held for as long as a run trains.

Two ``train`` processes pointed at the same ``--out`` would both pass the overwrite check before
either had written anything, and one run would silently replace the other. :class:`RunLock`
makes the second one refuse at once, naming the first:

>>> with RunLock("runs/resnet20"):     # doctest: +SKIP
...     ...                            # train, checkpoint, save the History

The lock is ``fcntl.flock`` on ``<folder>/.lock``, a file that holds the owner's PID, host and
start time. The kernel frees a ``flock`` when its process ends, however it ends (SIGKILL, a
crash, a power cut of a local disk), so a dead run never leaves a folder locked. The file is
removed on a clean exit. Where ``fcntl`` does not exist (Windows) the lock does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from resnet_lab.checkpoints import CHECKPOINT_NAME, HISTORY_NAME, History
from resnet_lab.cifar10 import CifarData
from resnet_lab.config import TrainConfig
from resnet_lab.distributed import distributed_setup
from resnet_lab.train import train

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected there
    fcntl = None

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process is training into the same folder."""


class RunExistsError(FileExistsError):
    """The run folder already holds another run, which training would overwrite."""


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"process {info['pid']} on {info['host']} (since {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """An exclusive lock on a run folder, taken on ``__enter__`` and freed on ``__exit__``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._locked(fd):
                    break
            except BaseException:
                os.close(fd)  # never leave a descriptor (and a lock) behind
                raise
            os.close(fd)
        self._fd = fd

    def _locked(self, fd: int) -> bool:
        """Lock ``fd`` and write the owner into it; False when the file was replaced meanwhile."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{self.path.parent} is in use by {_owner(self.path)}: wait for it to finish, "
                "or train into another folder (--out)"
            ) from None
        try:  # the file we locked may have been removed by its last owner meanwhile
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                return False
        except FileNotFoundError:
            return False
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can hold this file
        finally:
            os.close(self._fd)  # frees the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def train_in_folder(
    model,
    data: CifarData,
    cfg: TrainConfig,
    folder: str | os.PathLike | None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> History:
    """:func:`~resnet_lab.train.train` into the run folder ``folder`` (None: no checkpoint),
    under its lock, refusing to replace another run unless ``overwrite``; ``resume`` continues
    the run there."""
    folder = run_folder(folder, resume, overwrite)
    ranks = distributed_setup(cfg.device)
    with claim(folder, resume, overwrite, writer=ranks.is_main):
        return train(model, data, cfg, progress=progress, checkpoint_dir=folder, resume=resume)


def run_folder(checkpoint_dir, resume: bool, overwrite: bool) -> Path | None:
    """The run's folder from ``train``'s arguments, checked before anything else is done."""
    if resume and overwrite:
        raise ValueError(
            "resume and overwrite contradict each other: resume (--resume) continues the "
            "run in the folder, overwrite (--overwrite) replaces it; choose one"
        )
    if checkpoint_dir is None:
        if resume:
            raise ValueError("resume=True needs the run's folder: pass checkpoint_dir (--out)")
        return None
    if not str(checkpoint_dir).strip():
        raise ValueError(
            "the run's folder (checkpoint_dir, --out) is empty: name one, e.g. runs/resnet20"
        )
    folder = Path(checkpoint_dir)
    if folder.is_file() or folder.suffix in (".pt", ".pth", ".json"):
        raise ValueError(
            f"{folder} names a file, but checkpoint_dir (--out) is the run's folder, which "
            f"will hold {CHECKPOINT_NAME} and {HISTORY_NAME}: give a folder, e.g. {folder.parent}"
        )
    return folder


def _check_run_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to replace another run: a folder that holds one needs ``resume`` or ``overwrite``,
    and ``resume`` needs a checkpoint (a History alone is another run's record)."""
    if overwrite:  # the old run is replaced by the first checkpoint, atomically
        return
    existing = [n for n in (CHECKPOINT_NAME, HISTORY_NAME) if (folder / n).exists()]
    if existing and not resume:
        raise RunExistsError(
            f"{folder} already holds a run ({', '.join(existing)}): "
            "resume it (resume=True, --resume), choose another folder (--out), "
            "or replace it (overwrite=True, --overwrite)"
        )
    if resume and existing == [HISTORY_NAME]:
        raise RunExistsError(
            f"{folder} holds a {HISTORY_NAME} but no {CHECKPOINT_NAME} to resume from "
            "(another run's record, or its checkpoint was removed): "
            "choose another folder (--out), or replace it (--overwrite)"
        )


@contextlib.contextmanager
def claim(folder: Path | None, resume: bool, overwrite: bool, writer: bool = True):
    """While a run trains, its writer (rank 0 under torchrun) holds the folder's lock, after
    checking that it may write there and replaces no other run."""
    if folder is None or not writer:
        yield
        return
    with RunLock(check_writable(folder)):  # unwritable: fail now, not after an epoch
        _check_run_folder(folder, resume, overwrite)
        yield


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it, before any work
    is done; raises ``PermissionError`` naming the folder otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(
            f"cannot write to {folder} ({e.strerror or e}): choose another output folder (--out)"
        ) from e
    return folder


def check_results_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove that records can be written there, before any
    training: ``FileExistsError`` if it, or a folder above it, is a file; ``PermissionError``
    if it cannot be written."""
    folder = Path(folder)
    file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise FileExistsError(
            f"cannot write records to {folder}: {file} is a file, not a folder; "
            "choose another results folder (--results-dir)"
        )
    try:
        return check_writable(folder)
    except PermissionError as e:
        why = e.__cause__.strerror if isinstance(e.__cause__, OSError) else None
        raise PermissionError(
            f"cannot write records to {folder} ({why or e}): "
            "choose another results folder (--results-dir)"
        ) from e
