"""Where the book's records are read from, and where a reader's own runs are written.

Records are the small JSON Histories of real runs (and the few weights the book loads) that
the chapters plot. One rule says where they are:

1. ``$RESNET_LAB_RESULTS``, when set: that folder alone, read and written;
2. else, running from a checkout (the package's parent folder holds ``pyproject.toml`` and
   ``results/``; an editable install counts): the checkout's ``results/``, read and written,
   since its records are the book's;
3. else, installed from a wheel: the copy shipped inside the package (``resnet_lab/_results``,
   which ``setup.py`` copies from ``results/`` at build time), read only. The reader's own
   runs are written to :func:`own_results_dir` (``$XDG_DATA_HOME/resnet-lab/results``, by
   default ``~/.local/share/resnet-lab/results``), never into the installed package, and read
   beside the shipped ones: a reader's record of a run takes the place of the shipped record
   of the same run, and the chapter says so.

Standard library only: ``setup.py`` reads :data:`SHIPPED_WEIGHTS` from this file at build time,
before torch or anything else is installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV = "RESNET_LAB_RESULTS"
PACKAGE = Path(__file__).resolve().parents[1]  # resnet_lab/, this file being in resnet_lab/lab/
SHIPPED = PACKAGE / "_results"  # only in an installed wheel
# The weights the book loads: chapter 5's error analysis and lesion study, and chapter 6's transfer
# study. The wheel ships every JSON record and these; the other recorded weights stay in the
# repository.
SHIPPED_WEIGHTS = (
    "cpu_resnet20-seed0.pt",
    "degradation/resnet20-seed0.pt",
    "degradation/plain20-seed0.pt",
    "finetune/pretrained.pt",
)


def checkout_results() -> Path | None:
    """The checkout's ``results/`` when the package runs from a checkout, else None."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "results").is_dir():
        return root / "results"
    return None


def _from_env() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def results_dir() -> Path:
    """Where the book's records are read from: ``$RESNET_LAB_RESULTS``, the checkout's
    ``results/``, else the copy shipped in the package (see the module docstring)."""
    return _from_env() or checkout_results() or SHIPPED


def own_results_dir() -> Path:
    """Where experiments write their records: ``$RESNET_LAB_RESULTS``, the checkout's
    ``results/``, else the reader's data folder (``$XDG_DATA_HOME/resnet-lab/results``, by
    default ``~/.local/share/resnet-lab/results``): never inside the installed package."""
    found = _from_env() or checkout_results()
    if found is not None:
        return found
    base = os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "resnet-lab" / "results"


def record_dirs() -> list[Path]:
    """The folders records are read from, the book's first: one folder, or two when the package
    is installed and the reader has recorded runs of their own."""
    read, own = results_dir(), own_results_dir()
    return [read, own] if own != read and own.is_dir() else [read]


def git_commit() -> str | None:
    """The commit of the code that runs, ``+changes`` when the package's files differ from it:
    what a record says made it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=5
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        if commit and git("status", "--porcelain", "--untracked-files=no", "--", "."):
            commit += "+changes"
        return commit or None
    except (OSError, subprocess.SubprocessError):
        return None
