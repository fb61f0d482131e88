"""Checks of the *built* book in headless Chromium (run after `make book`; `.ci/run` does).

- the kernel-free depth slider of chapter 3 changes the figure (screenshots before and after);
- saved ipywidgets and formulas render from the book's own JavaScript, and no page asks any
  other host.

Needs Debian's `chromium` (or CHROMIUM=/path) and the Python package `playwright` (its own
browser download is not used).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
CHAPTERS = sorted((HTML / "book").glob("0*.html")) + sorted((HTML / "book").glob("appendix_*.html"))

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    if not HTML.is_dir():
        pytest.fail("the book is not built: run `make book` first")
    if CHROMIUM is None:
        pytest.fail("no Chromium found: `apt-get install chromium` or set CHROMIUM")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(1500)  # widget rendering runs after load
    return page, requested


def test_every_chapter_renders_and_asks_no_other_host(browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert CHAPTERS, "no chapter pages in _build/html/book"
    for chapter in CHAPTERS:
        page, requested = open_page(browser, chapter)
        page.screenshot(path=str(SHOTS / f"{chapter.stem}.png"), full_page=False)
        assert page.locator("h1").count() >= 1, f"{chapter.name} has no title"
        foreign = [
            u for u in requested if not u.startswith(("file://", "data:", "blob:", "about:"))
        ]
        assert not foreign, f"{chapter.name} requests {foreign[:3]}"
        page.close()


def test_depth_slider_changes_the_figure(browser):
    page, _ = open_page(browser, HTML / "book" / "03_deep_networks.html")
    slider = page.locator("input.anim-slider").first
    image = page.locator("img[id^='_anim_img']").first
    slider.scroll_into_view_if_needed()
    before_src = image.get_attribute("src")
    before = image.screenshot(path=str(SHOTS / "slider_before.png"))
    n_frames = int(slider.get_attribute("max"))
    assert n_frames >= 1
    slider.evaluate(f"(el) => {{ el.value = {n_frames}; el.dispatchEvent(new Event('input')); }}")
    page.wait_for_timeout(300)
    after = image.screenshot(path=str(SHOTS / "slider_after.png"))
    assert image.get_attribute("src") != before_src, "the slider did not switch frames"
    assert before != after, "the figure looks the same after moving the slider"
    page.close()


def test_saved_widgets_render_offline(browser):
    page, requested = open_page(browser, HTML / "book" / "03_deep_networks.html")
    assert any("/_static/embed-amd.js" in u for u in requested), (
        "widget JavaScript not loaded from the book"
    )
    rendered = page.locator(".jupyter-widgets, .widget-slider, .widget-selection-slider")
    assert rendered.count() > 0, "no widget rendered from the saved state"
    page.close()


def test_math_renders_offline(browser):
    page, requested = open_page(browser, HTML / "book" / "02_residual_math.html")
    assert any("/_static/mathjax/tex-chtml.js" in u for u in requested), (
        "MathJax not loaded from the book"
    )
    page.wait_for_selector("mjx-container", timeout=10_000)
    assert page.locator("mjx-container").count() >= 3, (
        "formulas were not typeset"
    )  # the 3 display equations
    page.close()


def test_code_cells_fit_their_column(browser):
    """No code cell of any chapter needs horizontal scrolling at a desktop width."""
    wide = {}
    for chapter in CHAPTERS:
        page, _ = open_page(browser, chapter)
        n = page.evaluate("""() => [...document.querySelectorAll('div.cell_input pre')]
                                   .filter(p => !p.closest('.tag_hide-input'))   // folded away
                                   .filter(p => p.scrollWidth > p.clientWidth + 1).length""")
        if n:
            wide[chapter.name] = n
        page.close()
    assert not wide, f"code cells wider than the page's code column: {wide}"


# draws each character of the player's buttons in the button's own font, and beside it a
# character no font has (plane 16's last private-use codepoint): a character that draws the
# same pixels is the font's empty box (tofu), one that draws nothing is blank
GLYPHS = """() => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const draw = (ch, font) => {
    ctx.clearRect(0, 0, 64, 64);
    ctx.font = font;
    ctx.textBaseline = 'middle';
    ctx.fillText(ch, 4, 32);
    return ctx.getImageData(0, 0, 64, 64).data;
  };
  const out = [];
  for (const button of document.querySelectorAll('.anim-buttons button')) {
    const font = '32px ' + getComputedStyle(button).fontFamily;
    const tofu = draw(String.fromCodePoint(0x10FFFD), font);
    for (const ch of button.textContent.trim()) {
      if (ch.trim() === '') continue;
      const px = draw(ch, font);
      let ink = 0, same = true;
      for (let i = 3; i < px.length; i += 4) {
        if (px[i]) ink++;
        if (px[i] !== tofu[i]) same = false;
      }
      out.push({button: button.title, ch, ink, tofu: same, font});
    }
  }
  return out;
}"""


def test_the_players_buttons_show_their_glyphs(browser):
    """⏮ ⏸ ⏭ showed as empty boxes with fonts that lack them: every character on the
    kernel-free player's buttons must draw ink, and not the empty box of a missing glyph."""
    page, _ = open_page(browser, HTML / "book" / "03_deep_networks.html")
    glyphs = page.evaluate(GLYPHS)
    page.close()
    assert len({g["button"] for g in glyphs}) == 9, glyphs
    bad = [g for g in glyphs if g["tofu"] or g["ink"] == 0]
    assert not bad, f"buttons without their glyph in {glyphs[0]['font']}: {bad}"
