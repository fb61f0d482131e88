"""The strict build's Colab and Binder buttons open each chapter's .ipynb pair under
repository.url (read from _build/html after `make book-strict`; no browser needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_book import CHAPTERS, _expected_launch_links, launch_links

HTML = Path(__file__).resolve().parents[1] / "_build" / "html" / "book"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_built_launch_buttons_open_the_pair(chapter):
    page = HTML / f"{chapter.stem}.html"
    if not page.is_file():
        pytest.fail("the book is not built: run `make book-strict` first")
    found = launch_links(page.read_text(encoding="utf-8"))
    assert found == set(_expected_launch_links(f"book/{chapter.stem}")), sorted(found)
