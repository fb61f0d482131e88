"""Write the repository's address where the book needs it.

``_config.yml``'s ``repository.url`` is the one home of the address (the launch buttons read it
there). This script writes it into the first cell of every chapter and appendix (the install
cell, :func:`install_cell`: resnet-lab installed where it is missing, with the ranges of
``pyproject.toml``) and into the README's and the preface's install lines.
``make notebooks`` runs it, then regenerates the ``.ipynb`` pairs; ``--check`` changes nothing
and exits 1 when a copy differs (tests/test_book.py runs the same check).

    python tools/sync_book.py [--check]
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# the install lines of the README and the preface, in both editions: `git+` and the address
ADDRESS_LINES = (ROOT / "README.md", ROOT / "book" / "index.md", ROOT / "book" / "zh" / "index.md")
GIT_URL = re.compile(r"git\+https?://[^\s\"'`)]+")
FIRST_CELL = re.compile(
    r"```\{code-cell\} ipython3\n:tags: \[remove-output, hide-input\]\n.*?\n```", re.S
)

# A chapter's first cell: resnet-lab is installed only where it is missing, with pip's ranges
# (pyproject.toml), which Colab's preinstalled torch, torchvision and ipywidgets satisfy, so
# pip changes none of them (.ci/colab proves it in an environment pinned like Colab). Where
# resnet-lab is installed already (a clone, a wheel, a second run) nothing is installed.
INSTALL_CELL = """\
# Colab or a fresh environment: install resnet-lab only if it is missing.
import importlib.util, os
if missing := importlib.util.find_spec("resnet_lab") is None:
    %pip install -q resnet-lab@git+{url}
import resnet_lab, torch
cuda = torch.cuda.is_available()
prof = os.environ.setdefault("RESNET_LAB_PROFILE", "gpu" if cuda else "cpu")
print(f"resnet-lab {{'installed' if missing else 'found'}}; profile {{prof}}")"""
INSTALL_CELL_LINES = 8  # at most: one pip line is what readers know
PAGE_COLUMNS = 77  # a chapter's code lines fit the page


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = (config.get("repository") or {}).get("url", "")
    if not url.startswith("https://"):
        raise SystemExit(f"_config.yml: repository.url must be an https:// address, got {url!r}")
    return url.rstrip("/")


def install_cell(url: str | None = None) -> str:
    """The source of every chapter's first cell, tags included, as a MyST code cell."""
    body = INSTALL_CELL.format(url=url or repository_url())
    lines = body.splitlines()
    if len(lines) > INSTALL_CELL_LINES or max(map(len, lines)) > PAGE_COLUMNS:
        raise SystemExit(
            f"the install cell must fit {INSTALL_CELL_LINES} lines of {PAGE_COLUMNS} columns "
            f"(it has {len(lines)}, the longest {max(map(len, lines))}): shorten "
            "_config.yml's repository.url or tools/sync_book.py's INSTALL_CELL"
        )
    return "```{code-cell} ipython3\n:tags: [remove-output, hide-input]\n\n" + body + "\n```"


# the book's notebook pages: the chapters (NN_topic.md), then the appendices (appendix_topic.md)
PAGE_GLOBS = ("[0-9][0-9]_*.md", "appendix_*.md")


def chapters() -> list[Path]:
    """Every notebook page of the book (a jupytext header with a kernelspec), chapters first,
    then appendices: the pages that get the install cell and an .ipynb pair."""
    return [
        p
        for pattern in PAGE_GLOBS
        for p in sorted((ROOT / "book").glob(pattern))
        if "kernelspec:" in p.read_text(encoding="utf-8")[:600]
    ]


def synced(path: Path, url: str) -> str:
    """The text ``path`` should have: its install cell or install line with today's address."""
    text = path.read_text(encoding="utf-8")
    if path in ADDRESS_LINES:
        return GIT_URL.sub(f"git+{url}", text)
    found = FIRST_CELL.search(text)
    if found is None or found.start() != text.find("```{code-cell}"):
        raise SystemExit(
            f"{path.name}: the first code cell is not the install cell (tagged "
            "[remove-output, hide-input]): put one before the first section"
        )
    return FIRST_CELL.sub(lambda _m: install_cell(url), text, count=1)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    check = "--check" in argv
    url = repository_url()
    stale = []
    for path in [*chapters(), *ADDRESS_LINES]:
        want = synced(path, url)
        if want != path.read_text(encoding="utf-8"):
            stale.append(path.relative_to(ROOT))
            if not check:
                write_atomic(path, want)
    if check and stale:
        print(
            f"out of date with _config.yml or the install cell: {[str(p) for p in stale]}; "
            "run `make notebooks`",
            file=sys.stderr,
        )
        return 1
    print(
        f"{'checked' if check else 'wrote'} the install cell and lines for {url}"
        + (f"; updated {[str(p) for p in stale]}" if stale and not check else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
