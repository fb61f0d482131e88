"""The package in an environment pinned like Colab as it ships (``.ci/colab``).

    python tools/colab_check.py borrow --into DIR NAME...     (the repository venv's python)
        symlinks the installed files of NAME (torch, torchvision, ...) and of everything they
        require into DIR, so that a new environment with DIR on its path has them installed,
        as Colab has, without downloading them;
    python tools/colab_check.py cell --source SPEC --out FILE (the pinned environment's python)
        runs a chapter's install cell, as committed, in a kernel, with the repository's address
        replaced by SPEC (the wheel): it must install resnet-lab and say so; run again, it must
        find it and install nothing;
    python tools/colab_check.py explorers --out FILE          (the pinned environment's python)
        builds the three explorers in a kernel, moves each slider from Python and checks that
        they recompute, draw into their Output widget and are shown as widget views of
        protocol 2 (what Colab's frontend speaks);
    python tools/colab_check.py views NOTEBOOK...
        the executed chapters: each shows widget views, all of protocol 2.

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from standalone_check import WIDGET_MIME, execute  # beside this script (tools/)

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = 2  # the widget view protocol of ipywidgets 7.x and 8.x, and Colab's frontend


# ---------------------------------------------------------------- borrowing installed packages


def requirement_closure(names: list[str]) -> list[md.Distribution]:
    """The installed distributions ``names`` and everything they require in this environment,
    the extras they ask for included (torch's ``cuda-toolkit[cublas, ...]``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, md.Distribution] = {}
    extras: dict[str, set[str]] = {}
    todo = [(n, frozenset()) for n in names]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in seen and wanted <= extras[key]:
            continue
        extras[key] = extras.get(key, set()) | set(wanted)
        seen[key] = dist = md.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in ("", *extras[key])
            ):
                todo.append((req.name, frozenset(req.extras)))
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def borrow(names: list[str], into: Path) -> None:
    """Symlink the top-level files and folders of ``names``' closure into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    dists = requirement_closure(names)
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(tops - {"..", "__pycache__"}):
            target, link = Path(dist.locate_file(top)), into / top
            if target.exists() and not link.exists():
                link.symlink_to(target)
    print(
        f"borrowed from {sys.prefix}: "
        + ", ".join(f"{d.metadata['Name']} {d.version}" for d in dists)
    )


# ---------------------------------------------------------------- the install cell


def install_cell(chapter: Path, source: str) -> str:
    """The install cell of ``chapter`` (an .ipynb pair), as committed, with the address it
    installs from replaced by ``source``."""
    cells = nbformat.read(chapter, as_version=4).cells
    cell = next(c.source for c in cells if c.cell_type == "code")
    address = re.search(r"resnet-lab@(git\+\S+)", cell)
    if address is None:
        raise SystemExit(f"{chapter.name}: the first cell installs no resnet-lab@git+...")
    return cell.replace(address.group(1), source)


def check_cell(source: str, out: Path) -> int:
    """Run the install cell twice in fresh kernels: it installs resnet-lab, then finds it."""
    cell = install_cell(ROOT / "book" / "01_background.ipynb", source)
    said = []
    for expected in ("installed", "found"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
        with tempfile.TemporaryDirectory() as empty:
            error = execute(nb, Path(empty))
        text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
        said.append(text.strip())
        print(f"install cell, run {len(said)}: {' | '.join(text.strip().splitlines())}")
        if error or f"resnet-lab {expected}" not in text:
            print(f"FAILED: expected 'resnet-lab {expected}'" + (f"; {error}" if error else ""))
            return 1
    out.write_text(json.dumps({"cell": cell, "said": said}, indent=1))
    return 0


# ---------------------------------------------------------------- the explorers

EXPLORERS = """\
import ipykernel, ipywidgets, IPython, torch
from IPython.display import display
from resnet_lab.book.widgets import DepthExplorer, LesionExplorer, TrainingRace
from resnet_lab.cifar10 import CLASSES, CifarData
from resnet_lab.loader import CifarLoader
from resnet_lab.models import cifar_resnet

print("versions", ipywidgets.__version__, ipykernel.__version__, IPython.__version__)
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8)
labels = torch.arange(40) % 10
data = CifarData(images, labels, images[:20], labels[:20], CLASSES, "synthetic")

depth = DepthExplorer(images[:16], labels[:16], depth=8)
display(depth)
depth.depth.value = 14
assert set(depth.current) == {"resnet14", "plain14"}, depth.current.keys()
assert "resnet14" in depth.info.value

race = TrainingRace(data, depth=8, epochs=1, batch_size=20)
display(race)
race.run()
race.depth.value = 14
assert "press" in race.status.value
race.run()
assert set(race.results[(14, 1)]) == {"resnet14", "plain14"}

loader = CifarLoader(images[:20], labels[:20], 10, train=False, device="cpu")
lesion = LesionExplorer(cifar_resnet(14), cifar_resnet(14, skip=False), loader)
display(lesion)
lesion.block.value = 1
assert "block 1 removed" in lesion.info.value
print("moved", depth.depth.value, race.depth.value, lesion.block.value)
"""


def _output_widgets_with_figures(nb) -> int:
    """How many Output widgets in the saved widget state hold a figure."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return sum(
        any("image/png" in o.get("data", {}) for o in m["state"].get("outputs", []))
        for m in state.get("state", {}).values()
        if m.get("model_name") == "OutputModel"
    )


def check_explorers(out: Path) -> int:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(EXPLORERS)])
    with tempfile.TemporaryDirectory() as empty:
        error = execute(nb, Path(empty))
    nbformat.write(nb, out)
    texts = [o.get("text", "") for o in nb.cells[0].outputs if o.get("output_type") == "stream"]
    print("explorers: " + " | ".join("".join(texts).strip().splitlines()))
    problems = [error] if error else []
    views = _views(nb)
    if len(views) != 3 or any(v.get("version_major") != PROTOCOL for v in views):
        problems.append(f"expected 3 widget views of protocol {PROTOCOL}, got {views}")
    drawn = _output_widgets_with_figures(nb)
    if drawn < 3:
        problems.append(f"only {drawn} of the 3 explorers drew a figure into its Output widget")
    print(f"explorers: {len(views)} widget views, {drawn} Output widgets with a figure")
    for p in problems:
        print(f"FAILED: {p}")
    return 1 if problems else 0


def _views(nb) -> list[dict]:
    return [
        o["data"][WIDGET_MIME]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if WIDGET_MIME in o.get("data", {})
    ]


def check_views(paths: list[Path]) -> int:
    failed = 0
    for path in paths:
        views = _views(nbformat.read(path, as_version=4))
        majors = sorted({v.get("version_major") for v in views})
        ok = bool(views) and majors == [PROTOCOL]
        print(
            f"{path.stem}: {len(views)} widget views, protocol {majors}" + ("" if ok else " FAILED")
        )
        failed += not ok
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("borrow")
    p.add_argument("--into", type=Path, required=True)
    p.add_argument("names", nargs="+")
    p = sub.add_parser("cell")
    p.add_argument("--source", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("explorers")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("views")
    p.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("RESNET_LAB_PROFILE", "smoke")
    if args.command == "borrow":
        borrow(args.names, args.into)
        return 0
    if args.command == "cell":
        return check_cell(args.source, args.out)
    if args.command == "explorers":
        return check_explorers(args.out)
    return check_views(args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
