"""Write the repository's address and the package's requirements where the book needs them.

``_config.yml``'s ``repository.url`` is the one home of the address (the launch buttons read it
there) and ``pyproject.toml``'s ``dependencies`` the one list of requirements. This script
writes both into the first cell of every chapter and appendix (the install cell,
:func:`install_cell`) and the address into the README's and the preface's install lines.
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
# the install lines of the README and the preface: `git+` and the address
ADDRESS_LINES = (ROOT / "README.md", ROOT / "book" / "index.md")
GIT_URL = re.compile(r"git\+https?://[^\s\"'`)]+")
FIRST_CELL = re.compile(
    r"```\{code-cell\} ipython3\n:tags: \[remove-output, hide-input\]\n.*?\n```", re.S
)

INSTALL_CELL = """\
# Colab or a fresh environment: install only what is missing, never torch.
# Written by tools/sync_book.py from _config.yml and pyproject.toml.
import importlib
import importlib.metadata as md
import importlib.util
import os
import subprocess
import sys
import tempfile

REPO = "{url}"
# what pip installs resnet-lab from: a clone or a wheel works too
SOURCE = os.environ.get("RESNET_LAB_SOURCE") or f"resnet-lab @ git+{{REPO}}"
NEEDS = {needs}


def _version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _pip(*args):
    cmd = [sys.executable, "-m", "pip", "install", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(
            f"pip could not install {{args[-1]}} ({{why}}): install resnet-lab "
            "from a clone or a wheel (see the book's preface), then rerun")


have = {{d: v for d in NEEDS if (v := _version(d))}}
missing = [d + NEEDS[d] for d in NEEDS if d not in have]
installed = []
if missing:  # what is installed stays as it is: pinned by a constraints file
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:
        pins.write("".join(f"{{d}}=={{v}}\\n" for d, v in have.items()))
        pins.flush()
        _pip("-c", pins.name, *missing)
    installed += missing
if importlib.util.find_spec("resnet_lab") is None:
    _pip("--no-deps", SOURCE)  # its requirements are handled above
    installed.append(SOURCE)
importlib.invalidate_caches()
import resnet_lab
import torch

cuda = torch.cuda.is_available()
os.environ.setdefault("RESNET_LAB_PROFILE", "gpu" if cuda else "cpu")
print(f"installed {{', '.join(installed) or 'nothing'}}; kept "
      + ", ".join(f"{{d}} {{v}}" for d, v in have.items())
      + f"; profile {{os.environ['RESNET_LAB_PROFILE']}} (CUDA: {{cuda}})")"""


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = (config.get("repository") or {}).get("url", "")
    if not url.startswith("https://"):
        raise SystemExit(f"_config.yml: repository.url must be an https:// address, got {url!r}")
    return url.rstrip("/")


def requirements() -> dict[str, str]:
    """``{distribution: version range}`` from pyproject.toml's ``dependencies``."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    if block is None:
        raise SystemExit("pyproject.toml: no `dependencies = [...]` list found")
    reqs = re.findall(r'"([A-Za-z0-9_.-]+)([^"]*)"', block.group(1))
    return dict(reqs)


def install_cell(url: str | None = None) -> str:
    """The source of every chapter's first cell, tags included, as a MyST code cell."""
    needs = requirements()
    lines = ",\n".join(f'    "{d}": "{s}"' for d, s in needs.items())
    body = INSTALL_CELL.format(url=url or repository_url(), needs="{\n" + lines + ",\n}")
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
            f"out of date with _config.yml/pyproject.toml: {[str(p) for p in stale]}; "
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
