"""Run chapters as a reader does, and compare them with the book built in the repository.

``.ci/standalone`` (``make standalone``) builds the wheel, installs it into a fresh virtual
environment and calls this script twice:

    python tools/standalone_check.py run --alone --out DIR book/NN_*.ipynb book/appendix_*.ipynb
        each .ipynb pair copied alone into an empty folder and executed there (as Colab
        does), after a probe proves that the kernel imports resnet_lab from site-packages;
    python tools/standalone_check.py compare REFERENCE DIR
        per chapter: a cell that raised (other than those tagged raises-exception), every
        "no recorded ..." fallback, the figures and widgets against the in-repository run
        (REFERENCE: the strict build's _build/jupyter_execute/book, or ``run`` without
        --alone on the chapters), and the numbers printed by the cells that read records.

Exit status 1 when a chapter fails any check. Needs nbclient, nbformat and ipykernel (jupytext
for .md chapters).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
# what a chapter prints when a record is missing (chapters 1, 5, 6, 7 and load_results' note)
FALLBACKS = re.compile(
    r"no recorded|no pretrained|no usable|no results folder|"
    r"nothing is recorded|your own (runs|weights|pretrained)",
    re.I,
)
FIGURE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# cells whose printed numbers come from records, not from live training
READS_RECORDS = re.compile(
    r"\b(load_results|load_sweep|load_transfer|record_weights|recorded_model)\("
)
CELL_TIMEOUT = 900

PROBE = """import sys, resnet_lab, resnet_lab.lab.records as r
print(sys.executable)
print(resnet_lab.__file__)
print(r.results_dir())"""


def _read(path: Path):
    if path.suffix == ".md":
        import jupytext

        return jupytext.read(path)
    return nbformat.read(path, as_version=4)


def execute(nb, cwd: Path) -> str | None:
    """Execute ``nb`` in place in a kernel started in ``cwd``; the error of the cell that
    raised, None when every cell ran (cells tagged raises-exception may raise)."""
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except CellExecutionError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        return lines[-1] if lines else "a cell raised"
    return None


def probe_installed() -> None:
    """Fail unless a kernel started in an empty folder imports resnet_lab from this
    environment's site-packages and reads the records shipped inside it."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    with tempfile.TemporaryDirectory() as empty:
        error = execute(nb, Path(empty))
    if error:
        raise SystemExit(f"probe: the kernel could not import resnet_lab: {error}")
    executable, package, records = nb.cells[0].outputs[0]["text"].split()
    print(f"probe: kernel {executable}\nprobe: resnet_lab {package}\nprobe: records {records}")
    if not Path(package).resolve().is_relative_to(site):
        raise SystemExit(
            f"probe: resnet_lab does not come from the wheel in {site}: "
            "PYTHONPATH or an editable install leaks the checkout in"
        )
    if not Path(records).resolve().is_relative_to(site):
        raise SystemExit(
            f"probe: records are read from {records}, not from the wheel in "
            f"{site}: unset RESNET_LAB_RESULTS"
        )


def shipped_records_match() -> None:
    """The installed package's records are byte for byte the repository's."""
    import resnet_lab.lab.records as records

    shipped = records.SHIPPED
    files = [p for p in shipped.rglob("*") if p.is_file()]
    differ = [
        str(p.relative_to(shipped))
        for p in files
        if p.read_bytes() != (ROOT / "results" / p.relative_to(shipped)).read_bytes()
    ]
    if not files or differ:
        raise SystemExit(f"the wheel's records differ from results/: {differ or 'none shipped'}")
    print(f"records: {len(files)} files in {shipped}, identical to results/")


def run(paths: list[Path], out: Path, alone: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    if alone:
        probe_installed()
        shipped_records_match()
    failed = 0
    for path in paths:
        nb = _read(path)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"{path.stem}-") as empty:
            if alone:  # the pair alone in an empty folder, as Colab opens it
                shutil.copy(path, Path(empty) / path.name)
            error = execute(nb, Path(empty) if alone else path.parent)
        nbformat.write(nb, out / f"{path.stem}.ipynb")
        failed += error is not None
        print(
            f"{path.stem}: {time.perf_counter() - t0:.0f} s"
            + (f", FAILED: {error}" if error else ""),
            flush=True,
        )
    return 1 if failed else 0


def _texts(cell) -> list[str]:
    """What a cell printed, one text per output. A stream that arrived in chunks (a cell that
    prints, computes, then prints again) is one text: consecutive outputs of the same stream are
    joined. The strict build's executed copy (myst-nb, ``merge_streams``) holds the joined text
    and then the later chunks once more; a chunk that the joined text already ends with is
    that copy, and is dropped."""
    texts: list[str] = []
    last_stream = None
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            text = "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
            if last_stream == o.get("name") and texts:
                if not texts[-1].endswith(text):
                    texts[-1] += text
                continue
            texts.append(text)
            last_stream = o.get("name")
        else:
            last_stream = None
            if "text/plain" in o.get("data", {}):
                texts.append(o["data"]["text/plain"])
    return texts


def _numbers(cell) -> list[str]:
    """The numbers a cell printed, paths left out (they differ between the two runs)."""
    words = " ".join(_texts(cell)).split()
    return [n for w in words if "/" not in w for n in re.findall(r"\d+(?:\.\d+)?", w)]


def summary(nb) -> dict:
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    html = [o["data"].get("text/html", "") for o in outputs if "data" in o]
    return {
        "errors": [
            c.source.splitlines()[0] if c.source else "?"
            for c in code
            if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            and "raises-exception" not in c.metadata.get("tags", [])
        ],
        "fallbacks": sorted(
            {
                line.strip()
                for c in code
                for t in _texts(c)
                for line in t.splitlines()
                if FALLBACKS.search(line)
            }
        ),
        "figures": sum(any(m in o.get("data", {}) for m in FIGURE_MIMES) for o in outputs)
        + sum("<img" in (h if isinstance(h, str) else "".join(h)) for h in html),
        "widgets": sum(WIDGET_MIME in o.get("data", {}) for o in outputs),
        "numbers": [_numbers(c) for c in code if READS_RECORDS.search(c.source)],
    }


def compare(reference: Path, standalone: Path) -> int:
    failed = 0
    pages = [
        p for g in ("[0-9][0-9]_*.ipynb", "appendix_*.ipynb") for p in sorted(standalone.glob(g))
    ]
    for path in pages:
        ref_path = reference / path.name
        if not ref_path.is_file():
            print(f"{path.stem}: no in-repository run in {reference}: FAILED")
            failed += 1
            continue
        mine, ref = summary(nbformat.read(path, 4)), summary(nbformat.read(ref_path, 4))
        problems = [f"cell raised: {e}" for e in mine["errors"]]
        problems += [f"fallback: {f}" for f in mine["fallbacks"]]
        for key in ("figures", "widgets"):
            if mine[key] != ref[key]:
                problems.append(f"{key} {mine[key]} here, {ref[key]} in the repository")
        if mine["numbers"] != ref["numbers"]:
            problems.append("recorded numbers differ from the repository's")
        print(
            f"{path.stem}: fallbacks {len(mine['fallbacks'])}, figures {mine['figures']} "
            f"(repository {ref['figures']}), widgets {mine['widgets']} "
            f"(repository {ref['widgets']}), record cells {len(mine['numbers'])} with "
            f"{sum(map(len, mine['numbers']))} numbers "
            f"{'equal' if mine['numbers'] == ref['numbers'] else 'DIFFERENT'}"
            + "".join(f"\n    FAILED: {p}" for p in problems)
        )
        failed += bool(problems)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute chapters, writing the executed notebooks")
    p_run.add_argument("notebooks", nargs="+", type=Path)
    p_run.add_argument("--out", type=Path, required=True)
    p_run.add_argument(
        "--alone",
        action="store_true",
        help="each in an empty folder, resnet_lab from site-packages",
    )
    p_cmp = sub.add_parser("compare", help="check standalone runs against the repository's")
    p_cmp.add_argument("reference", type=Path)
    p_cmp.add_argument("standalone", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.notebooks, args.out, args.alone)
    return compare(args.reference, args.standalone)


if __name__ == "__main__":
    sys.exit(main())
