"""A Sphinx extension: every page of each edition links to the same page in the other.

The English book is built from the repository's root (its pages at ``book/<page>.html``), the
Chinese one from ``book/zh/`` and copied into ``zh/`` beside it (``zh/<page>.html``); the
search and index pages sit at the top of each. ``edition`` (``en`` or ``zh``, set in each
edition's ``_config.yml``) says which one is being built. The link is a button in the page's
header, beside the download and full-screen buttons.
"""

from __future__ import annotations

from pathlib import Path

TOP_LEVEL = ("search", "genindex")  # pages Sphinx writes at the top of each edition


def other_edition(edition: str, pagename: str) -> tuple[str, str, str]:
    """(relative link, label, language) of ``pagename``'s page in the other edition."""
    if edition == "en":
        up = "../" * pagename.count("/")
        return f"{up}zh/{pagename.removeprefix('book/')}.html", "中文", "zh"
    up = "../" * (pagename.count("/") + 1)
    target = pagename if pagename in TOP_LEVEL else f"book/{pagename}"
    return f"{up}{target}.html", "English", "en"


def _templates(app, config) -> None:
    config.templates_path.append(str(Path(__file__).parent / "edition_templates"))
    config.html_static_path.append(str(Path(__file__).parent / "edition_static"))
    app.add_css_file("editions.css")
    items = config.html_theme_options.get("article_header_end") or ["article-header-buttons.html"]
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",")]
    config.html_theme_options["article_header_end"] = ["edition-switch.html", *items]


def _link(app, pagename, templatename, context, doctree) -> None:
    context["edition_link"] = other_edition(app.config.edition, pagename)


def setup(app):
    app.add_config_value("edition", "en", "html")
    app.connect("config-inited", _templates)
    app.connect("html-page-context", _link)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
