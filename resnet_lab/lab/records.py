"""Where the book's records are read from, and where a reader's own runs are recorded.

A *record* is the History of a finished run saved as JSON (``<experiment>-seed<k>.json``, and
for a few runs the trained weights beside it, ``.pt``); a *results folder* holds records. Two
of them count, and the rule is the same from a clone and from a wheel:

1. The book's records (:func:`results_dir`), always read: running from a checkout (the
   package's parent folder holds ``pyproject.toml`` and ``results/``; an editable install
   counts), the checkout's ``results/``; installed from a wheel, the copy shipped inside the
   package (``resnet_lab/_results``, which ``setup.py`` copies from ``results/`` at build time).
2. The reader's own (:func:`own_results_dir`): ``$RESNET_LAB_RESULTS`` when set, else
   ``$XDG_DATA_HOME/resnet-lab/results`` (by default ``~/.local/share/resnet-lab/results``).
   Experiments write here, never over the book's records, and the chapters read these records
   beside the book's: a reader's record of a run takes the place of the book's record of the
   same run, and the chapter says so.

The book's maintainers record into the checkout's ``results/`` on purpose:
``python -m resnet_lab experiment NAME --into-book-results`` (:func:`book_results_to_write`).
``$RESNET_LAB_RESULTS`` naming the book's folder, or a folder inside it, is refused.

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
    "transfer/pretrained.pt",
)


def checkout_results() -> Path | None:
    """The checkout's ``results/`` when the package runs from a checkout, else None."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "results").is_dir():
        return root / "results"
    return None


def results_dir() -> Path:
    """The book's records, always read: the checkout's ``results/``, else the copy shipped in
    the package (see the module docstring)."""
    return checkout_results() or SHIPPED


def own_results_dir() -> Path:
    """Where the reader's runs are recorded, and read beside the book's: ``$RESNET_LAB_RESULTS``
    when set, else ``$XDG_DATA_HOME/resnet-lab/results`` (by default
    ``~/.local/share/resnet-lab/results``); never inside the installed package."""
    value = os.environ.get(ENV, "").strip()
    if value:
        own, book = Path(value).expanduser(), results_dir()
        if own.resolve().is_relative_to(book.resolve()):
            raise ValueError(
                f"{ENV}={value!r} is the book's results folder ({book}): your runs would "
                "overwrite the book's records; name a folder of your own, e.g. "
                f"{ENV}=~/resnet-lab-results (a maintainer records into the book with "
                "--into-book-results)"
            )
        return own
    base = os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "resnet-lab" / "results"


def book_results_to_write() -> Path:
    """The checkout's ``results/``, for a maintainer who records a run into the book
    (``--into-book-results``); an installed package has none to write."""
    found = checkout_results()
    if found is None:
        raise ValueError(
            "--into-book-results records into a checkout's results/, but this resnet_lab is "
            f"installed ({PACKAGE}): run it from a clone of the repository, or leave the option "
            f"out to record into {own_results_dir()}"
        )
    return found


def record_dirs() -> list[Path]:
    """The results folders records are read from, the book's first: one folder, or two when the
    reader has recorded runs of their own (in a folder other than the book's)."""
    book, own = results_dir(), own_results_dir()
    same = own.is_dir() and book.is_dir() and own.resolve() == book.resolve()
    return [book, own] if own.is_dir() and not same else [book]


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
