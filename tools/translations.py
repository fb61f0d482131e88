"""The Chinese edition (book/zh/): one page for every English page, kept in step by checks.

Each Chinese page says in its front matter which English text it translates::

    translation:
      source: book/01_background.md
      blob: 3b18e512dba79e4c8300dd08aeb37f8e728b8dad   # git's hash of that English file

The hash is git's blob hash of the English file as it was when the translation was last brought
up to date, so ``git cat-file -p <blob>`` gives that text back and the checks can show what
changed in English since. To update a translation: edit the Chinese page to match the English
one (the diff the check prints says what changed), then record the English file's current hash:

    python tools/translations.py stamp book/zh/01_background.md
    python tools/translations.py check          # every page: present, current, same code, terms

The checks (``tests/test_editions.py`` runs them, and proves each fails on a planted drift):

- every English page of ``_toc.yml`` has a Chinese page, and ``book/zh/_toc.yml`` lists them in
  the same order (``sync`` writes it, with ``book/zh/_config.yml``, from the English ones);
- each Chinese page records the hash of the English page as it stands now;
- the code cells of a pair are identical, cell by cell (one execution serves both editions);
- every term of ``book/zh/terms.yml`` takes its one Chinese form: none of the forms it lists
  to avoid appears in the Chinese prose (code, math and the article's own words excepted);
- every quotation of the article (in 「」) is the article's text as it stands.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]
ZH = ROOT / "book" / "zh"
# the article the book follows, beside the checkout (as in CI), or where $RESNET_LAB_ARTICLE says
SEED = Path(
    os.environ.get("RESNET_LAB_ARTICLE")
    or ROOT.parent / "shared" / "seed" / "000_f056f18051bd2730.txt"
)
FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)


# ---------------------------------------------------------------------------- the pages


def toc_files(toc: Path) -> list[str]:
    """The pages a ``_toc.yml`` lists, in order (root first)."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    files = [data["root"]]
    for part in data.get("parts", [{"chapters": data.get("chapters", [])}]):
        files += [c["file"] for c in part["chapters"]]
    return files


def pairs(root: Path = ROOT) -> list[tuple[Path, Path]]:
    """(English page, Chinese page) for every page of the English table of contents."""
    return [
        (root / f"{f}.md", root / "book" / "zh" / f"{Path(f).name}.md")
        for f in toc_files(root / "_toc.yml")
    ]


def blob_hash(path: Path) -> str:
    """git's blob hash of a file (``git hash-object``), computed without git."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def front_matter(path: Path) -> dict:
    found = FRONT.match(path.read_text(encoding="utf-8"))
    return (yaml.safe_load(found.group(1)) or {}) if found else {}


def code_cells(path: Path) -> list[tuple[str, list[str]]]:
    """(source, tags) of every code cell of a page; none for a page that is not a notebook."""
    if "kernelspec:" not in path.read_text(encoding="utf-8")[:600]:
        return []
    return [
        (c.source, sorted(c.metadata.get("tags", [])))
        for c in jupytext.read(path).cells
        if c.cell_type == "code"
    ]


# ---------------------------------------------------------------------------- the checks


def missing(root: Path = ROOT) -> list[str]:
    """Problems of presence: an English page without its Chinese page, a toc out of step."""
    found = [
        f"{zh.relative_to(root)} is missing (translates {en.relative_to(root)})"
        for en, zh in pairs(root)
        if not zh.is_file()
    ]
    return found


def stale(en: Path, zh: Path, root: Path = ROOT) -> str | None:
    """None when ``zh`` records the hash of ``en`` as it stands; else a message naming the page
    and showing the English diff since the recorded hash."""
    meta = front_matter(zh).get("translation") or {}
    source, blob = meta.get("source"), str(meta.get("blob", ""))
    rel = en.relative_to(root).as_posix()
    if source != rel:
        return f"{zh.relative_to(root)}: its front matter must say translation.source: {rel}"
    now = blob_hash(en)
    if blob == now:
        return None
    old = subprocess.run(["git", "cat-file", "-p", blob], cwd=root, capture_output=True, text=True)
    if old.returncode:
        diff = f"(the recorded English text {blob[:12]} is not in this clone's history)"
    else:
        diff = "".join(
            difflib.unified_diff(
                old.stdout.splitlines(True),
                en.read_text(encoding="utf-8").splitlines(True),
                f"{rel} as translated ({blob[:12]})",
                f"{rel} now ({now[:12]})",
                n=1,
            )
        )
    return (
        f"{zh.relative_to(root)} translates an older {rel}: bring the translation up to "
        f"date, then run `python tools/translations.py stamp {zh.relative_to(root)}`. "
        f"The English changed since:\n{diff}"
    )


def code_differs(en: Path, zh: Path) -> str | None:
    """None when the two pages' code cells are identical, cell by cell; else the first
    difference."""
    a, b = code_cells(en), code_cells(zh)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            line = next(
                (
                    f"{p!r} / {q!r}"
                    for p, q in zip([*x[0].splitlines(), ""], [*y[0].splitlines(), ""])
                    if p != q
                ),
                f"tags {x[1]} / {y[1]}",
            )
            return f"{zh.name}: code cell {i} differs from {en.name}'s: {line}"
    if len(a) != len(b):
        return f"{zh.name} has {len(b)} code cells, {en.name} has {len(a)}"
    return None


def prose(text: str) -> str:
    """The Chinese prose of a page: front matter, code cells and fenced blocks, inline code,
    math and the article's quoted words (「...」 and blockquotes) taken out."""
    text = FRONT.sub("", text)
    text = re.sub(r"^(`{3,}|:{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]+`", "", text, flags=re.S)
    text = re.sub(r"「[^」]*」", "", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def load_terms(path: Path | None = None) -> list[dict]:
    return yaml.safe_load((path or ZH / "terms.yml").read_text(encoding="utf-8"))


def term_problems(zh: Path, terms: list[dict]) -> list[str]:
    """Every use of a form the glossary avoids, with the form to use instead."""
    text = prose(zh.read_text(encoding="utf-8"))
    return [
        f"{zh.name}: '{bad}' for {t['en']}: use '{t['zh']}'"
        for t in terms
        for bad in t.get("avoid", [])
        if bad in text
    ]


def quote_problems(zh: Path, seed: Path = SEED) -> list[str]:
    """Every 「quotation」 of a Chinese page that is not the article's text as it stands
    (whitespace and inline-math delimiters aside)."""

    def bare(s: str) -> str:  # whitespace and the article's inline-math delimiters aside
        return re.sub(r"\s+|\\\(|\\\)|\$", "", s)

    article = bare(seed.read_text(encoding="utf-8"))
    text = FRONT.sub("", zh.read_text(encoding="utf-8"))
    return [
        f"{zh.name}: 「{q[:40]}」 is not the article's text as it stands"
        for q in re.findall(r"「([^」]*)」", text)
        if bare(q).replace("……", "")
        and not all(part in article for part in bare(q).split("……") if part)
    ]


def problems(root: Path = ROOT) -> list[str]:
    """Everything the checks find, one message each."""
    found = missing(root) + [
        f"book/zh/{name} differs from what _config.yml and _toc.yml give: run "
        "`python tools/translations.py sync`"
        for name, make in GENERATED.items()
        if not (root / "book" / "zh" / name).is_file()
        or (root / "book" / "zh" / name).read_text(encoding="utf-8") != make(root)
    ]
    terms = load_terms(root / "book" / "zh" / "terms.yml")
    for en, zh in pairs(root):
        if zh.is_file():
            found += [m for m in (stale(en, zh, root), code_differs(en, zh)) if m]
            found += term_problems(zh, terms) + quote_problems(zh)
    return found


# ---------------------------------------------------------------------------- writing


def stamp(zh: Path, root: Path = ROOT) -> str:
    """Record in ``zh``'s front matter the hash of the English page it now translates."""
    zh = zh.resolve()
    en = next((e for e, z in pairs(root) if z == zh), None)
    if en is None:
        raise SystemExit(f"{zh} is not the Chinese page of any page of _toc.yml")
    text = zh.read_text(encoding="utf-8")
    entry = {"source": en.relative_to(root).as_posix(), "blob": blob_hash(en)}
    found = FRONT.match(text)
    meta = (yaml.safe_load(found.group(1)) or {}) if found else {}
    meta["translation"] = entry
    head = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip()
    zh.write_text(
        f"---\n{head}\n---\n" + (text[found.end() :] if found else text), encoding="utf-8"
    )
    return f"{zh.relative_to(root)}: translates {entry['source']} at {entry['blob'][:12]}"


def zh_toc(root: Path = ROOT) -> str:
    """book/zh/_toc.yml: the English table of contents, its pages in book/zh/, captions in
    Chinese."""
    data = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    captions = {"Chapters": "章节", "Appendix": "附录"}
    out = {
        "format": data["format"],
        "root": Path(data["root"]).name,
        "parts": [
            {
                "caption": captions.get(p["caption"], p["caption"]),
                "chapters": [{"file": Path(c["file"]).name} for c in p["chapters"]],
            }
            for p in data["parts"]
        ],
    }
    head = "# Written by tools/translations.py from _toc.yml: edit that file, then run `sync`.\n"
    return head + yaml.safe_dump(out, allow_unicode=True, sort_keys=False)


# what the Chinese edition's configuration changes in the English one (paths are relative to
# book/zh/, where that edition's build starts; the execution cache is the English one's, so one
# execution serves both editions)
ZH_CONFIG = {
    "title": "resnet-lab：从零开始的残差网络",
    "bibtex_bibfiles": ["../references.bib"],
    "execute": {"cache": "_build/.jupyter_cache"},
    "repository": {"path_to_book": "book/zh"},
    "html": {"search_bar_text": "搜索本书……"},
    "sphinx": {
        "config": {"language": "zh_CN", "edition": "zh", "html_static_path": ["../vendor_js"]},
        "local_extensions": {"editions": "../../tools"},
    },
}


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def zh_config(root: Path = ROOT) -> str:
    """book/zh/_config.yml: the English configuration with :data:`ZH_CONFIG`'s changes."""
    data = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    data["exclude_patterns"] = [
        p for p in data.get("exclude_patterns", []) if not p.startswith("book/")
    ] + ["*.ipynb", "terms.yml"]
    data = _merged(data, ZH_CONFIG)
    head = "# Written by tools/translations.py from _config.yml: edit that file, then run `sync`.\n"
    return head + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


GENERATED = {"_toc.yml": zh_toc, "_config.yml": zh_config}


CODE_CELL = re.compile(r"^```\{code-cell\}.*?^```[ \t]*$", re.S | re.M)


def sync_code(zh: Path, root: Path = ROOT) -> str:
    """Where the English page changed only inside its code cells since the recorded hash, copy
    its code cells into the Chinese page, in order, and restamp it. Refused (SystemExit) where
    its prose changed too: that needs a translator."""
    meta = front_matter(zh).get("translation") or {}
    en = root / str(meta.get("source", ""))
    old = subprocess.run(
        ["git", "cat-file", "-p", str(meta.get("blob", ""))],
        cwd=root,
        capture_output=True,
        text=True,
    )
    new = en.read_text(encoding="utf-8")
    if old.returncode or CODE_CELL.sub("", old.stdout) != CODE_CELL.sub("", new):
        raise SystemExit(f"{zh.relative_to(root)}: the English prose changed too: translate it")
    cells, text = CODE_CELL.findall(new), zh.read_text(encoding="utf-8")
    if len(CODE_CELL.findall(text)) != len(cells):
        raise SystemExit(f"{zh.relative_to(root)}: not as many code cells as {en.name}")
    it = iter(cells)
    zh.write_text(CODE_CELL.sub(lambda _m: next(it), text), encoding="utf-8")
    return stamp(zh, root)


def main(argv: list[str]) -> int:
    if argv[:1] == ["stamp"] and len(argv) > 1:
        for page in argv[1:]:
            print(stamp(Path(page)))
        return 0
    if argv[:1] == ["code"] and len(argv) > 1:
        for page in argv[1:]:
            print(sync_code(Path(page).resolve()))
        return 0
    if argv[:1] == ["sync"]:
        for name, make in GENERATED.items():
            (ZH / name).write_text(make(), encoding="utf-8")
            print(f"wrote book/zh/{name}")
        return 0
    if argv[:1] in (["check"], ["status"]):
        found = problems()
        print("\n\n".join(found) or f"all {len(pairs())} Chinese pages present and current")
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
