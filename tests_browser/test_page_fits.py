"""The built chapters read well at 1280 px in headless Chromium (after `make book`):

- no output block is wider than its column (its ``scrollWidth`` exceeds its ``clientWidth``:
  the reader would have to scroll sideways, and the screenshot cuts the line);
- the smallest text in every figure is at least ``MIN_PX`` CSS pixels as the page shows it.

How the figure text is measured: each figure's PNG carries, in a text chunk, the smallest text
matplotlib drew in it (points) and the figure's dpi (``resnet_lab.book.style.text_record``,
added by the book's PNG formatter). The page gives the image's natural and rendered widths, so
that text is ``pt * dpi / 72 * rendered / natural`` pixels on the page. This reads every text
drawn, titles, ticks, legends, table cells and source notes alike, whatever set its size, rather
than the sizes the package meant to set; a figure without the record fails (it was not drawn
where the book's formatter could see it).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests_browser.test_built_book import CHAPTERS, HTML, browser, open_page  # noqa: F401

PIL = pytest.importorskip("PIL.Image")
MIN_PX = 9.0
RECORD_KEY = "resnet_lab:text"

# every output block that scrolls sideways, with its widest line
WIDE_OUTPUTS = """() => [...document.querySelectorAll('.cell_output pre')]
  .filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => ({over: p.scrollWidth - p.clientWidth, width: p.clientWidth,
              line: p.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a)}))"""

# every image in a cell's output (saved widgets and the kernel-free player included)
IMAGES = """() => [...document.querySelectorAll('.cell_output img')].map(i => ({
  src: i.getAttribute('src'), natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
  column: i.closest('.cell_output').clientWidth}))"""


def _png_bytes(src: str, page_path: Path) -> bytes:
    if src.startswith("data:"):
        return base64.b64decode(src.split(",", 1)[1])
    url = urlparse(src)
    path = Path(unquote(url.path)) if url.scheme == "file" else page_path.parent / unquote(src)
    return path.read_bytes()


def figure_text_px(image: dict, page_path: Path) -> tuple[float | None, dict]:
    """The smallest text of one figure in CSS pixels as the page shows it, and its record;
    None when the PNG has no record."""
    png = PIL.open(io.BytesIO(_png_bytes(image["src"], page_path)))
    record = json.loads(png.text.get(RECORD_KEY, "null") or "null")
    if record is None or "min_pt" not in record:
        return None, record or {}
    # an image not laid out (a folded output) would show at its natural size, or the column's
    shown = image["shown"] or min(image["natural"], image["column"] or image["natural"])
    return record["min_pt"] * record["dpi"] / 72 * shown / png.width, record


def measure_chapter(browser, chapter: Path) -> dict:  # noqa: F811
    page, _ = open_page(browser, chapter)
    wide = page.evaluate(WIDE_OUTPUTS)
    images = page.evaluate(IMAGES)
    page.close()
    figures = [(figure_text_px(i, chapter), i) for i in images]
    return {"wide": wide, "figures": figures}


@pytest.fixture(scope="module")
def measured(browser):  # noqa: F811
    return {chapter.name: measure_chapter(browser, chapter) for chapter in CHAPTERS}


def test_outputs_fit_their_column(measured):
    """Every printed output fits the column: no block scrolls sideways."""
    wide = {
        name: [f"+{w['over']} px: {w['line'][:70]!r}" for w in m["wide"]]
        for name, m in measured.items()
        if m["wide"]
    }
    report = "\n".join(
        f"{name}: {len(rows)} wide\n  " + "\n  ".join(rows) for name, rows in wide.items()
    )
    assert not wide, f"output blocks wider than their column (wrap or shorten them):\n{report}"


def test_figure_text_is_readable(measured):
    """The smallest text of every figure is at least MIN_PX pixels on the page."""
    small, unrecorded = [], []
    for name, m in measured.items():
        for (px, record), image in m["figures"]:
            where = f"{name}: {image['src'][:40]}..."
            if px is None:
                unrecorded.append(where)
            elif px < MIN_PX:
                small.append(f"{where} {px:.1f} px ({record['min_pt']} pt: {record['smallest']!r})")
    problems = [f"under {MIN_PX} px at 1280 px: {row}" for row in small] + [
        f"no text record (not drawn after importing resnet_lab.book.style): {row}"
        for row in unrecorded
    ]
    assert not problems, "figure text a reader cannot read:\n" + "\n".join(problems)
