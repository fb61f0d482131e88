"""The book's structure: every chapter in the table of contents exists, and each chapter's
output-less .ipynb pair (for the Colab and Binder buttons) holds the same cells."""

import ast
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
# chapters that are notebooks (a jupytext header with a kernelspec) get an .ipynb pair
CHAPTERS = [p for p in PAGES if "kernelspec:" in p.read_text(encoding="utf-8")[:600]]


def _toc_files():
    files = []
    for line in (ROOT / "_toc.yml").read_text().splitlines():
        line = line.strip()
        if line.startswith(("- file:", "root:")):
            files.append(line.split(":", 1)[1].strip())
    return files


def test_toc_lists_every_chapter_and_nothing_missing():
    listed = set(_toc_files())
    for f in listed:
        assert (ROOT / f"{f}.md").exists(), f"_toc.yml lists {f} but {f}.md does not exist"
    for ch in PAGES:
        assert f"book/{ch.stem}" in listed, f"{ch.name} is not in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_ipynb_pair_in_sync(chapter):
    pair = chapter.with_suffix(".ipynb")
    assert pair.exists(), f"{pair.name} missing: run `make notebooks`"
    md, nb = jupytext.read(chapter), jupytext.read(pair)
    assert [(c.cell_type, c.source) for c in md.cells] == [(c.cell_type, c.source) for c in nb.cells], (
        f"{pair.name} is out of sync with {chapter.name}: run `make notebooks`"
    )
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "pairs carry no outputs"


def test_pairs_have_no_orphans():
    for nb in (ROOT / "book").glob("*.ipynb"):
        assert nb.with_suffix(".md").exists(), f"{nb.name} has no chapter: delete it"


CODE_WIDTH = 77  # characters: what the rendered code column holds (14px monospace in 684px)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_code_fits_the_page(chapter):
    shown = [c for c in jupytext.read(chapter).cells
             if c.cell_type == "code" and "hide-input" not in c.metadata.get("tags", [])]
    wide = [(i, line) for c in shown for i, line in enumerate(c.source.splitlines()) if len(line) > CODE_WIDTH]
    assert not wide, f"{chapter.name}: code lines over {CODE_WIDTH} characters: {wide[:3]}"


def _included_objects(chapter):
    """(file, object, end-before) of every ``{literalinclude}`` with ``:pyobject:`` in a chapter."""
    pattern = r"```\{literalinclude\} (\S+)\n:pyobject: (\S+)\n(?::end-before: \"(.*)\"\n)?"
    return re.findall(pattern, chapter.read_text(encoding="utf-8"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_included_package_code_fits_the_page(chapter):
    for path, name, end in _included_objects(chapter):
        source = (chapter.parent / path).read_text(encoding="utf-8")
        obj = ast.parse(source)
        for part in name.split("."):  # "BasicBlock.forward": the class, then its method
            obj = next(n for n in ast.walk(obj) if getattr(n, "name", None) == part)
        lines = source.splitlines()[obj.lineno - 1 - len(obj.decorator_list) : obj.end_lineno]
        if end:
            lines = lines[: next((i for i, line in enumerate(lines) if line.startswith(end)), len(lines))]
        wide = [line for line in lines if len(line) > CODE_WIDTH]
        assert not wide, f"{chapter.name} includes {name} from {path}: lines over {CODE_WIDTH}: {wide[:3]}"


def test_the_included_objects_are_found():
    found = {name for chapter in CHAPTERS for _, name, _ in _included_objects(chapter)}
    assert {"train", "train_step", "TrainConfig", "BasicBlock.forward"} <= found, found


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_a_check_that_fails_until_answered(chapter):
    text = chapter.read_text(encoding="utf-8")
    if "## Exercises" not in text:
        pytest.fail(f"{chapter.name} has no exercises")
    exercises = text.split("## Exercises", 1)[1]
    checks = exercises.count(":tags: [raises-exception]")
    numbered = sum(1 for line in exercises.splitlines() if line[:3] in {f"{i}. " for i in range(1, 10)})
    assert checks >= numbered >= 1, f"{chapter.name}: {numbered} exercises but {checks} check cells"
    assert "# your code here" in exercises, f"{chapter.name}: no exercise where the reader writes code"
