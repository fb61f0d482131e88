"""Saving and loading runs: atomic writes, the History JSON, training checkpoints.

Everything here is written atomically (a temporary file in the same folder, then a rename), so
a crash or Ctrl-C in the middle of a write never leaves a half-written file behind. Checkpoints
are read with ``torch.load(..., weights_only=True)``: a checkpoint cannot run code.

A checkpoint records how to rebuild its model (``build``: a name and arguments for
:func:`~resnet_lab.lab.names.build_model`), its layer signature, the TrainConfig, the data
it was trained on and the History so far, so that resuming or evaluating it with another
network or other data is refused with a message that names both sides.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import textwrap
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_lab.config import is_real

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
CHECKPOINT_FORMATS = ("resnet_lab.checkpoint/1", "resnet_lab.weights/1")


class CheckpointMismatch(ValueError):
    """A checkpoint of another model, another recipe or other data was offered."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path``. The temporary file lives
    in the same folder (a rename across file systems would not be atomic) and is removed on
    failure, so ``path`` keeps its previous content. A failed write (a full disk, say) raises an
    ``OSError`` of one line that names ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        failure = _write_failure(path, e)
        if failure is None:
            raise
        raise failure from e
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_failure(path: Path, e: Exception) -> OSError | None:
    """The one-line OSError for a failed write of ``path``, of the same class as ``e`` when it
    is a built-in OSError; None for a RuntimeError that is not a write failure."""
    free = f"{_free_bytes(path.parent) / 2**20:,.0f} MiB free there"
    fix = "free some space or write elsewhere (another --out)"
    if isinstance(e, RuntimeError):
        # torch.save's zip writer reports a full disk as "unexpected pos" or "file write failed"
        if not any(s in str(e) for s in ("unexpected pos", "write failed", "PytorchStreamWriter")):
            return None
        code, why = errno.EIO, f"the write failed, most likely for lack of space ({free})"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        code, why = e.errno, f"no space left on device ({free})"
    else:
        code, why = e.errno, e.strerror.lower() if e.strerror else str(e) or "input/output error"
        fix = "write elsewhere (another --out)"
    cls = type(e) if isinstance(e, OSError) and type(e).__module__ == "builtins" else OSError
    failure = cls(f"could not write {path}: {why}; {fix}; the previous file, if any, is intact")
    failure.errno = code
    return failure


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically: a crash mid-write never leaves a half-written file at ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_dead_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` (``.<name>.tmp-<pid>``) that a writer
    killed mid-write (SIGKILL, a crash) left in ``folder``: those whose process no longer runs
    on this machine. A live writer's file is kept. Returns the files removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp-*"):
        found = re.fullmatch(r"\..+\.tmp-(\d+)", path.name)
        if found and path.is_file() and not _alive(int(found[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (assumed so where that cannot be asked)."""
    if os.name == "posix":  # signal 0 only asks; on Windows os.kill would end the process
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):
            return False
        except OSError:  # another user's process
            pass
    return True


# ---------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch records plus ``meta`` (model, data, device, hardware, versions, config).

    Each record has ``epoch, train_loss, train_acc, test_loss, test_acc, lr, seconds,
    images_per_sec`` (test values are ``None`` for epochs that were not evaluated; ``seconds``
    is training time only, evaluation excluded). Saved as JSON ``{"meta": ..., "epochs": [...]}``.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, key: str) -> list[Any]:
        """``history["test_acc"]``: that column, one value per epoch."""
        return [r.get(key) for r in self.epochs]

    @property
    def final(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}

    @property
    def interrupted(self) -> bool:
        """Whether the run was stopped (Ctrl-C) before its last epoch: not a finished record."""
        return "interrupted_after_epoch" in self.meta

    @property
    def train_seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.epochs))

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"meta": self.meta, "epochs": self.epochs}, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a History JSON. A truncated or malformed file, or an epoch whose numbers cannot
        be (an accuracy outside [0, 1], a NaN loss), raises a ValueError naming the file and
        what is wrong with it."""
        path = Path(path)
        blob = _read_json(path)
        if not isinstance(blob, dict) or "epochs" not in blob:
            raise ValueError(f"{path} is not a History JSON (expected keys 'meta' and 'epochs')")
        epochs, meta = blob["epochs"], blob.get("meta", {})
        if not isinstance(epochs, list) or not all(isinstance(r, dict) for r in epochs):
            raise ValueError(
                f"{path}: 'epochs' must be a list of per-epoch records, got {type(epochs).__name__}"
            )
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: 'meta' must be a JSON object, got {type(meta).__name__}")
        for i, r in enumerate(epochs):
            bad = _bad_numbers(r)
            if bad:
                raise ValueError(
                    f"{path}: epoch record {i}: {'; '.join(bad)}: the file is damaged or was "
                    "edited by hand; restore it, or re-run the experiment that wrote it"
                )
        return cls(epochs=list(epochs), meta=dict(meta))

    def summary(self) -> str:
        """The run in a sentence, wrapped to the page's 77 columns."""
        acc = self.final.get("test_acc")
        acc_s = f"{100 * acc:.2f}%" if acc is not None else "n/a"
        return textwrap.fill(
            f"{self.meta.get('model', '?')}: test accuracy {acc_s} after {len(self)} epochs, "
            f"{self.train_seconds / 60:.1f} min of training on {self.meta.get('hardware', '?')}",
            77,
            subsequent_indent="  ",
        )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
            f"{e.start}), so not a History JSON: check the file's name, or re-run "
            "the experiment that wrote it"
        ) from e
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}): "
            "the file is truncated or damaged; re-run the experiment that wrote it"
        ) from e


def _bad_numbers(record: dict) -> list[str]:
    """What is wrong with the numbers of one epoch's record: ``epoch`` and ``seconds`` must be
    finite numbers, every ``*_acc`` (and ``*_acc_raw``) a fraction in [0, 1] or null, every
    ``*_loss`` finite or null."""
    bad = [f"lacks a number for {k!r}" for k in ("epoch", "seconds") if not is_real(record.get(k))]
    for k, v in record.items():
        if v is None:
            continue
        kind = k.removesuffix("_raw")  # test_acc_raw: the raw weights' next to the average's
        if kind.endswith("_acc") and not (is_real(v) and 0 <= v <= 1):
            bad.append(f"{k} {v!r} is not a fraction in [0, 1]")
        elif kind.endswith("_loss") and not is_real(v):
            bad.append(f"{k} {v!r} is not a finite number")
    return bad


# ---------------------------------------------------------------------------- checkpoints


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict we save: the original one, if ``model`` was compiled or
    wrapped in DistributedDataParallel."""
    while True:  # compile(DDP(model)), DDP(model), compile(model), in any nesting
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_name(model: nn.Module) -> str:
    return getattr(model, "name", type(model).__name__)


def model_signature(model: nn.Module) -> list[list]:
    """Parameter and buffer names with shapes: what a checkpoint must match to load."""
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def save_checkpoint(
    path, model, optimizer, scheduler, epoch: int, cfg, history: History, scaler=None, ema=None
) -> None:
    target = unwrap(model)
    state = {
        "format": "resnet_lab.checkpoint/1",
        "model_name": model_name(target),
        "build": getattr(target, "build_spec", None),
        "signature": model_signature(target),
        "model": target.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema.state_dict()
        if ema is not None
        else None,  # the averaged weights (TrainConfig.ema)
        "epoch": epoch,
        "config": asdict(cfg),
        "data": history.meta.get("data"),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": {"meta": history.meta, "epochs": history.epochs},
    }
    atomic_save(state, path)


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module | None = None, map_location="cpu"
) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and, given ``model``, load its weights.

    Refuses, with :class:`CheckpointMismatch`, a checkpoint of another architecture: other layer
    shapes, or the same shapes under another name (a ResNet-20 checkpoint offered to a plain-20).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols suggests unsafe loading
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        why = _unreadable(e)
        raise ValueError(f"{path} is not a readable checkpoint ({why}); check the path") from e
    if not isinstance(state, dict) or state.get("format") not in CHECKPOINT_FORMATS:
        raise ValueError(f"{path} is not a resnet_lab checkpoint (saved by resnet_lab.train.train)")
    bad = _bad_fields(state)
    if bad:
        raise ValueError(
            f"{path} is a damaged resnet_lab checkpoint ({'; '.join(bad)}): restore it, or train "
            "it again"
        )
    if model is not None:
        target = unwrap(model)
        ours, theirs = model_name(target), state["model_name"]
        if state["signature"] != model_signature(target):
            raise CheckpointMismatch(
                f"{path} holds a {theirs} but the model is a {ours} "
                f"with different layers: build a {theirs} to load it"
            )
        if theirs != ours:
            raise CheckpointMismatch(
                f"{path} holds a {theirs} but the model is a {ours}: their layers have the same "
                f"shapes, but they are different networks; build a {theirs} to load it"
            )
        target.load_state_dict(state["model"])
    return state


# the fields a checkpoint must hold, and those it may hold (None where absent), with their types
FIELDS = {"model_name": str, "signature": list, "model": dict, "epoch": int}
OPTIONAL = {"build": dict, "history": dict, "config": dict, "data": str}


def _bad_fields(state: dict) -> list[str]:
    """What is missing, or of the wrong kind, among the fields that loading and evaluating a
    checkpoint read (a ``build`` is a name and arguments; a ``history``, meta and epochs)."""
    bad = [f"no {k!r}" for k in FIELDS if k not in state]
    for k, kind in {**FIELDS, **OPTIONAL}.items():
        if state.get(k) is not None and not isinstance(state[k], kind):
            bad.append(f"{k!r} is a {type(state[k]).__name__}, not a {kind.__name__}")
    parts = {"build": {"name": str, "kwargs": dict}, "history": {"meta": dict, "epochs": list}}
    for k, inner in parts.items():
        if isinstance(state.get(k), dict) and any(
            not isinstance(state[k].get(f), t) for f, t in inner.items()
        ):
            bad.append(f"{k!r} lacks its {' and '.join(inner)}")
    return bad


def _unreadable(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words. Never torch's own
    text: it advises ``weights_only=False``, which would run a crafted file's code."""
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            return f"it would run Python code, {found.group(1)[:60]}; nothing ran"
    if isinstance(e, EOFError):
        return "the file is empty or cut short"
    if isinstance(e, RuntimeError) and "zip archive" in str(e):
        return "a truncated or damaged zip archive"
    return "not a file written by torch.save"
