"""The Chinese edition in headless Chromium (after `make book`): its pages render Chinese text
in a CJK font, link to the English pages and back, its sliders work, and its search finds a
page by a Chinese word."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests_browser.test_built_book import HTML, SHOTS, browser, open_page  # noqa: F401

ZH = HTML / "zh"
ZH_PAGES = sorted(ZH.glob("0*.html")) + sorted(ZH.glob("appendix_*.html"))


def _fonts_of(page, selector: str) -> list[str]:
    """The fonts Chromium really drew the first ``selector``'s text with (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    cdp.send("CSS.enable")
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return [f["familyName"] for f in fonts if f["glyphCount"] > 0]


def test_every_chinese_page_renders_its_text_in_a_cjk_font(browser):  # noqa: F811
    assert ZH_PAGES, "no Chinese pages in _build/html/zh: run `make book`"
    for path in ZH_PAGES:
        page, requested = open_page(browser, path)
        page.screenshot(path=str(SHOTS / f"zh_{path.stem}.png"), full_page=False)
        assert page.evaluate("document.documentElement.lang") == "zh-CN", path.name
        # the title and the first paragraph: Chromium 156 reports no fonts for a heading in
        # the theme's system-ui stack (drawn all the same), so the paragraph carries the check
        fonts = _fonts_of(page, "main h1") + _fonts_of(page, "main p")
        assert any("CJK" in f or "Han" in f or "Hei" in f or "Song" in f for f in fonts), (
            f"{path.name}: its title and first paragraph are drawn with {fonts}, no CJK font: "
            "install one (fonts-noto-cjk)"
        )
        foreign = [u for u in requested if not u.startswith(("file://", "data:", "blob:"))]
        assert not foreign, f"{path.name} requests {foreign[:3]}"
        page.close()


@pytest.mark.parametrize("stem", ["index", "01_background"])
def test_each_edition_links_to_the_same_page_in_the_other(browser, stem):  # noqa: F811
    page, _ = open_page(browser, HTML / "book" / f"{stem}.html")
    page.locator("a.edition-switch").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/zh/{stem}.html"), page.url
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.locator("a.edition-switch").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/book/{stem}.html"), page.url
    page.close()


def test_a_chinese_slider_changes_its_figure(browser):  # noqa: F811
    for path in ZH_PAGES:
        page, _ = open_page(browser, path)
        if page.locator("input.anim-slider").count():
            break
        page.close()
    else:
        pytest.fail("no Chinese page has a kernel-free slider")
    slider = page.locator("input.anim-slider").first
    image = page.locator("img[id^='_anim_img']").first
    slider.scroll_into_view_if_needed()
    before = image.get_attribute("src")
    top = int(slider.get_attribute("max"))
    slider.evaluate(f"(el) => {{ el.value = {top}; el.dispatchEvent(new Event('input')); }}")
    page.wait_for_timeout(300)
    assert image.get_attribute("src") != before, f"{path.name}: the slider did not move the figure"
    page.close()


@pytest.mark.parametrize("word", ["残差", "微调"])
def test_chinese_search_finds_a_page(browser, word):  # noqa: F811
    page, _ = open_page(browser, ZH / "search.html")
    page.goto((ZH / "search.html").as_uri() + "?q=" + quote(word), wait_until="load")
    page.wait_for_selector("ul.search li", timeout=15_000)
    hits = page.locator("ul.search li a").all_inner_texts()
    assert hits, f"searching for {word} found nothing"
    page.close()


def test_every_page_links_to_its_other_edition_and_the_link_resolves():
    """Read from the built HTML: every page of either edition carries the switch, and its
    target exists."""
    import re

    pages = [*sorted((HTML / "book").glob("*.html")), *ZH_PAGES, ZH / "index.html"]
    assert len(pages) > 2, "the book is not built: run `make book`"
    for path in pages:
        links = re.findall(r'class="btn btn-sm edition-switch" href="([^"]+)"', path.read_text())
        assert links, f"{path.relative_to(HTML)} has no link to the other edition"
        target = (path.parent / links[0]).resolve()
        assert target.is_file(), f"{path.relative_to(HTML)} links to {links[0]}, which is missing"


def test_the_edition_switch_sits_in_the_header_row(browser):  # noqa: F811
    """The switch was drawn above the header's buttons, half under the top bar: it and the
    buttons must lie within the header's one row."""
    for path in (HTML / "book" / "01_background.html", ZH / "01_background.html"):
        page, _ = open_page(browser, path)
        boxes = page.evaluate("""() => {
          const box = s => { const r = document.querySelector(s).getBoundingClientRect();
                             return [r.top, r.bottom]; };
          return {row: box('.header-article__inner'), switch: box('a.edition-switch'),
                  buttons: box('.article-header-buttons')}; }""")
        page.close()
        top, bottom = boxes["row"]
        for name in ("switch", "buttons"):
            assert top - 1 <= boxes[name][0] and boxes[name][1] <= bottom + 1, (path.name, boxes)
