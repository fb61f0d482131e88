"""The Chinese edition keeps step with the English one (tools/translations.py): every page
translated, every translation current, the code cells identical pair by pair, each term in its
one Chinese form, the article quoted as it stands. Each check is also run on a small planted
book, where it must find the drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import translations as tr  # noqa: E402  (tools/ is not a package)

PAIRS = tr.pairs()
TERMS = tr.load_terms()


def test_every_english_page_has_its_chinese_page():
    assert not tr.missing(), "\n".join(tr.missing())


def test_the_chinese_config_and_toc_are_the_english_ones_translated():
    for name, make in tr.GENERATED.items():
        assert (tr.ZH / name).read_text(encoding="utf-8") == make(), (
            f"book/zh/{name} is out of step: run `python tools/translations.py sync`"
        )


@pytest.mark.parametrize("en,zh", PAIRS, ids=lambda p: p.name if isinstance(p, Path) else "")
def test_each_translation_is_current(en, zh):
    message = tr.stale(en, zh)
    assert message is None, message


@pytest.mark.parametrize("en,zh", PAIRS, ids=lambda p: p.name if isinstance(p, Path) else "")
def test_code_cells_are_identical_pair_by_pair(en, zh):
    message = tr.code_differs(en, zh)
    assert message is None, message


@pytest.mark.parametrize("en,zh", PAIRS, ids=lambda p: p.name if isinstance(p, Path) else "")
def test_each_term_takes_its_one_chinese_form(en, zh):
    assert not tr.term_problems(zh, TERMS), "\n".join(tr.term_problems(zh, TERMS))


@pytest.mark.parametrize("en,zh", PAIRS, ids=lambda p: p.name if isinstance(p, Path) else "")
def test_the_article_is_quoted_as_it_stands(en, zh):
    if not tr.SEED.is_file():
        pytest.skip(f"the article is not at {tr.SEED} (set RESNET_LAB_ARTICLE)")
    assert not tr.quote_problems(zh), "\n".join(tr.quote_problems(zh))


def test_the_glossary_gives_each_term_one_form():
    forms = [t["zh"] for t in TERMS]
    assert len(forms) == len(set(forms)), "two terms share a Chinese form"
    for t in TERMS:
        assert t["zh"] not in t.get("avoid", []), t
        clash = [u["en"] for u in TERMS if t["zh"] in u.get("avoid", [])]
        assert not clash, f"{t['zh']} ({t['en']}) is avoided for {clash}"


@pytest.mark.parametrize(
    "zh", [z for _, z in PAIRS if z.is_file() and tr.code_cells(z)], ids=lambda p: p.name
)
def test_chinese_ipynb_pair_in_sync(zh):
    pair = zh.with_suffix(".ipynb")
    assert pair.exists(), f"{pair.name} missing: run `make notebooks`"
    md, nb = jupytext.read(zh), jupytext.read(pair)
    assert [(c.cell_type, c.source) for c in md.cells] == [
        (c.cell_type, c.source) for c in nb.cells
    ], f"book/zh/{pair.name} is out of sync with {zh.name}: run `make notebooks`"


# ---------------------------------------------------------------- the checks on a planted book

HEADER = """---
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _planted(tmp_path: Path) -> Path:
    """A two-page book and its translation, committed, each translation stamped."""
    (tmp_path / "book" / "zh").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/index\nparts:\n- caption: Chapters\n  chapters:\n"
        "  - file: book/01_a\n"
    )
    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "book" / "index.md").write_text("# Preface\n\nResidual networks.\n")
    (tmp_path / "book" / "01_a.md").write_text(
        HEADER + "# Blocks\n\nBatch normalisation.\n\n```{code-cell} ipython3\nx = 1\n```\n"
    )
    (tmp_path / "book" / "zh" / "index.md").write_text("# 前言\n\n残差网络。\n")
    (tmp_path / "book" / "zh" / "01_a.md").write_text(
        HEADER + "# 残差块\n\n批归一化。\n\n```{code-cell} ipython3\nx = 1\n```\n"
    )
    (tmp_path / "book" / "zh" / "terms.yml").write_text(
        "- en: batch normalisation\n  zh: 批归一化\n  avoid: [批量归一化, 批标准化]\n"
    )
    for name in ("index.md", "01_a.md"):
        tr.stamp(tmp_path / "book" / "zh" / name, tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "planted"], check=True)
    return tmp_path


def test_the_planted_book_passes(tmp_path):
    root = _planted(tmp_path)
    assert tr.missing(root) == []
    terms = tr.load_terms(root / "book" / "zh" / "terms.yml")
    for en, zh in tr.pairs(root):
        assert tr.stale(en, zh, root) is None
        assert tr.code_differs(en, zh) is None
        assert tr.term_problems(zh, terms) == []


def test_a_changed_english_page_makes_its_translation_stale_and_shows_the_diff(tmp_path):
    root = _planted(tmp_path)
    en = root / "book" / "01_a.md"
    en.write_text(en.read_text().replace("Batch normalisation.", "Batch normalisation, twice."))
    message = tr.stale(en, root / "book" / "zh" / "01_a.md", root)
    assert message is not None and "book/zh/01_a.md" in message, message
    assert "-Batch normalisation." in message and "+Batch normalisation, twice." in message
    tr.stamp(root / "book" / "zh" / "01_a.md", root)  # the translation brought up to date
    assert tr.stale(en, root / "book" / "zh" / "01_a.md", root) is None


def test_a_changed_code_cell_is_found(tmp_path):
    root = _planted(tmp_path)
    zh = root / "book" / "zh" / "01_a.md"
    zh.write_text(zh.read_text().replace("x = 1", "x = 2"))
    message = tr.code_differs(root / "book" / "01_a.md", zh)
    assert message is not None and "code cell 0" in message and "'x = 2'" in message, message


def test_a_term_in_another_form_is_found_outside_code_and_quotes(tmp_path):
    root = _planted(tmp_path)
    zh = root / "book" / "zh" / "01_a.md"
    terms = tr.load_terms(root / "book" / "zh" / "terms.yml")
    zh.write_text(zh.read_text() + "\n`批量归一化` 与 「批量归一化」 不算。\n")
    assert tr.term_problems(zh, terms) == []  # in code and in the article's words: allowed
    zh.write_text(zh.read_text() + "\n批量归一化的作用。\n")
    assert tr.term_problems(zh, terms) == [
        "01_a.md: '批量归一化' for batch normalisation: use '批归一化'"
    ]


def test_a_missing_page_is_named(tmp_path):
    root = _planted(tmp_path)
    (root / "book" / "zh" / "01_a.md").unlink()
    assert any("book/zh/01_a.md is missing" in m for m in tr.missing(root))


def test_a_quotation_that_is_not_the_article_is_found(tmp_path):
    root = _planted(tmp_path)
    seed = tmp_path / "seed.txt"
    seed.write_text("残差网络（ResNet）是一种深度学习架构。\n它解决了梯度消失问题。")
    zh = root / "book" / "zh" / "01_a.md"
    zh.write_text(zh.read_text() + "\n文章说「残差网络（ResNet）是一种深度学习架构。」\n")
    assert tr.quote_problems(zh, seed) == []
    zh.write_text(zh.read_text() + "\n又说「它解决了梯度爆炸问题」。\n")  # back-translated
    assert len(tr.quote_problems(zh, seed)) == 1


def test_a_code_only_change_is_carried_over_and_a_prose_change_is_refused(tmp_path):
    """`translations.py code`: the English code cells copied into the translation, restamped,
    only where the English prose did not change."""
    root = _planted(tmp_path)
    en, zh = root / "book" / "01_a.md", root / "book" / "zh" / "01_a.md"
    en.write_text(en.read_text().replace("x = 1", "x = 1\nprint(x)"))
    assert tr.stale(en, zh, root) is not None and tr.code_differs(en, zh) is not None
    tr.sync_code(zh, root)
    assert tr.stale(en, zh, root) is None and tr.code_differs(en, zh) is None
    assert "批归一化。" in zh.read_text()  # the Chinese prose kept
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    en.write_text(en.read_text().replace("Batch normalisation.", "Batch norm, twice."))
    with pytest.raises(SystemExit, match="prose changed too"):
        tr.sync_code(zh, root)
