"""The book reads as a course (issue 20): every page carries more prose than code, no code cell
is longer than a screen, and every chapter ends with its takeaways before its exercises.

Prose and code are counted as the issue counts them: the characters of the non-blank lines of
markdown cells against those of code cells, stripped, every code cell included (the install cell
and hidden cells too: a reader of the notebook reads them). ``{literalinclude}`` directives sit
in markdown cells and count as one line of prose, not as the code they include."""

import re

import jupytext
import pytest

from tests.test_book import PAGES  # the chapters and appendices, as test_book finds them

MIN_RATIO = 1.5  # characters of prose per character of code
EXEMPT = {"05_full_network.md"}  # it runs the article's own code, failure by failure
MAX_CELL_LINES = 30


def balance(text: str) -> tuple[int, int, list[int]]:
    """(prose characters, code characters, non-blank line counts of each code cell)."""
    nb = jupytext.reads(text, fmt="md:myst")
    prose = code = 0
    cells = []
    for cell in nb.cells:
        lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
        if cell.cell_type == "markdown":
            prose += sum(map(len, lines))
        elif cell.cell_type == "code":
            code += sum(map(len, lines))
            cells.append(len(lines))
    return prose, code, cells


def _page(prose: str, code: str) -> str:
    header = "---\njupytext:\n  text_representation:\n    format_name: myst\n---\n"
    return f"{header}\n{prose}\n\n```{{code-cell}} ipython3\n{code}\n```\n"


def test_balance_counts_prose_against_code():
    prose, code, cells = balance(_page("Some prose.\n\nMore.", "x = 1\n\n\ny = x + 1"))
    assert (prose, code, cells) == (len("Some prose.") + len("More."), 5 + 9, [2])
    # a page that is mostly code fails the ratio the tests below demand
    prose, code, _ = balance(_page("Short.", "\n".join(f"value_{i} = {i}" for i in range(9))))
    assert prose < MIN_RATIO * code


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_prose_outweighs_code(page):
    if page.name in EXEMPT:
        pytest.skip(f"{page.name} runs the article's code")
    prose, code, _ = balance(page.read_text(encoding="utf-8"))
    assert prose >= MIN_RATIO * code, (
        f"{page.name}: {prose} characters of prose to {code} of code ({prose / code:.2f}); "
        f"write the idea out, or move bookkeeping into resnet_lab, to reach {MIN_RATIO}"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_code_cell_longer_than_a_screen(page):
    text = page.read_text(encoding="utf-8")
    _, _, cells = balance(text)
    # the install cell, written by tools/sync_book.py, is the first; it is the same everywhere
    long = [n for n in cells[1:] if n > MAX_CELL_LINES]
    assert not long, f"{page.name}: code cells of {long} non-blank lines (at most {MAX_CELL_LINES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_ends_with_its_takeaways(page):
    heads = re.findall(r"^## (.+)$", page.read_text(encoding="utf-8"), re.M)
    assert "Takeaways" in heads, f"{page.name} has no '## Takeaways' section"
    if "Exercises" in heads:
        assert heads.index("Takeaways") < heads.index("Exercises"), (
            f"{page.name}: the takeaways come before the exercises"
        )
