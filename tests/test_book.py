"""The book's structure: every chapter and appendix in the table of contents exists, and each
one's output-less .ipynb pair (for the Colab and Binder buttons) holds the same cells."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# the chapters (NN_topic.md) and the appendices (appendix_topic.md)
PAGES = [
    p
    for pattern in ("[0-9][0-9]_*.md", "appendix_*.md")
    for p in sorted((ROOT / "book").glob(pattern))
]
# pages that are notebooks (a jupytext header with a kernelspec) get an .ipynb pair
CHAPTERS = [p for p in PAGES if "kernelspec:" in p.read_text(encoding="utf-8")[:600]]


def _toc_files():
    files = []
    for line in (ROOT / "_toc.yml").read_text().splitlines():
        line = line.strip()
        if line.startswith(("- file:", "root:")):
            files.append(line.split(":", 1)[1].strip())
    return files


def test_toc_lists_every_chapter_and_nothing_missing():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc.get("parts", [])]
    assert captions[:1] == ["Chapters"] and "Appendix" in captions, captions
    appendix = next(p for p in toc["parts"] if p["caption"] == "Appendix")
    assert {c["file"] for c in appendix["chapters"]} >= {
        f"book/{p.stem}" for p in PAGES if p.name.startswith("appendix_")
    }, "every appendix is listed in the toc's Appendix part"
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
    assert [(c.cell_type, c.source) for c in md.cells] == [
        (c.cell_type, c.source) for c in nb.cells
    ], f"{pair.name} is out of sync with {chapter.name}: run `make notebooks`"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "pairs carry no outputs"
    )


def test_pairs_have_no_orphans():
    for nb in (ROOT / "book").glob("*.ipynb"):
        assert nb.with_suffix(".md").exists(), f"{nb.name} has no chapter: delete it"


CODE_WIDTH = 77  # characters: what the rendered code column holds (14px monospace in 684px)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_code_fits_the_page(chapter):
    shown = [
        c
        for c in jupytext.read(chapter).cells
        if c.cell_type == "code" and "hide-input" not in c.metadata.get("tags", [])
    ]
    wide = [
        (i, line)
        for c in shown
        for i, line in enumerate(c.source.splitlines())
        if len(line) > CODE_WIDTH
    ]
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
            lines = lines[
                : next((i for i, line in enumerate(lines) if line.startswith(end)), len(lines))
            ]
        wide = [line for line in lines if len(line) > CODE_WIDTH]
        assert not wide, (
            f"{chapter.name} includes {name} from {path}: lines over {CODE_WIDTH}: {wide[:3]}"
        )


def test_the_included_objects_are_found():
    found = {name for chapter in CHAPTERS for _, name, _ in _included_objects(chapter)}
    assert {"train", "train_step", "TrainConfig", "BasicBlock.forward"} <= found, found


@pytest.mark.parametrize(
    "chapter", [c for c in CHAPTERS if c.name[:2].isdigit()], ids=lambda p: p.name
)
def test_every_exercise_has_a_check_that_fails_until_answered(chapter):  # appendices: none
    text = chapter.read_text(encoding="utf-8")
    if "## Exercises" not in text:
        pytest.fail(f"{chapter.name} has no exercises")
    exercises = text.split("## Exercises", 1)[1]
    checks = exercises.count(":tags: [raises-exception]")
    numbered = sum(
        1 for line in exercises.splitlines() if line[:3] in {f"{i}. " for i in range(1, 10)}
    )
    assert checks >= numbered >= 1, f"{chapter.name}: {numbered} exercises but {checks} check cells"
    assert "# your code here" in exercises, (
        f"{chapter.name}: no exercise where the reader writes code"
    )


# ---------------------------------------------------------------- the repository's one address

sys.path.insert(0, str(ROOT / "tools"))
import sync_book  # noqa: E402  (tools/ is not a package)


def test_the_appendix_is_a_page_like_the_chapters():
    """tools/sync_book.py writes the install cell into the same pages this file checks, the
    appendices included (they are globbed by name, not by a chapter number)."""
    assert sync_book.chapters() == CHAPTERS
    assert any(p.name.startswith("appendix_") for p in CHAPTERS), "no appendix page found"


def test_install_cells_and_lines_follow_config():
    """Every chapter's first cell, and the README's and preface's install lines, are what
    tools/sync_book.py writes from _config.yml's repository.url and pyproject.toml."""
    url = sync_book.repository_url()
    for path in [*sync_book.chapters(), *sync_book.ADDRESS_LINES]:
        assert path.read_text(encoding="utf-8") == sync_book.synced(path, url), (
            f"{path.name} differs from _config.yml's repository.url or pyproject.toml's "
            "dependencies: run `make notebooks`"
        )
    assert f"git+{url}" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_address_is_written_nowhere_else():
    """No tracked file names the repository by another address (the pairs copy the chapters)."""
    url = sync_book.repository_url()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    wrong = {}
    for name in tracked:
        if Path(name).suffix not in {".md", ".ipynb", ".py", ".yml", ".toml", ".txt", ".cfg"}:
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        found = set(re.findall(r"git\+(https?://[^\s\"'`)\\]+)", text)) - {url}
        if found:
            wrong[name] = sorted(found)
    assert not wrong, f"addresses other than {url} (repository.url): {wrong}: run `make notebooks`"


ELSEWHERE = "https://example.org/x/y"  # an address the tests write the cell for


def _run_install_cell(monkeypatch, capsys, installed: bool):
    """The install cell as IPython runs it, with ``%pip`` recorded instead of run: what it
    asked pip for, and the line it printed."""
    from IPython.core.inputtransformer2 import TransformerManager

    cell = sync_book.install_cell(ELSEWHERE)
    body = cell.split("\n\n", 1)[1].removesuffix("\n```")
    asked = []

    class Shell:
        def run_line_magic(self, name, line):
            asked.append(f"%{name} {line}")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real_find_spec(name, *a) if installed else None)
            if name == "resnet_lab"
            else real_find_spec(name, *a)
        ),
    )
    monkeypatch.delenv("RESNET_LAB_PROFILE", raising=False)
    exec(TransformerManager().transform_cell(body), {"get_ipython": Shell})
    return asked, capsys.readouterr().out.strip()


def test_install_cell_is_one_pip_line_for_what_is_missing(monkeypatch, capsys):
    """At most 8 lines; pip runs only where resnet_lab is missing, with pip's ranges (which
    keep what Colab has: .ci/colab); the cell says what it did and sets the profile."""
    import torch

    cell = sync_book.install_cell(ELSEWHERE)
    assert len(cell.split("\n\n", 1)[1].splitlines()) - 1 <= 8
    profile = "gpu" if torch.cuda.is_available() else "cpu"
    asked, said = _run_install_cell(monkeypatch, capsys, installed=True)
    assert asked == [] and said == f"resnet-lab found; profile {profile}"
    assert os.environ["RESNET_LAB_PROFILE"] == profile
    asked, said = _run_install_cell(monkeypatch, capsys, installed=False)
    assert asked == [f"%pip install -q resnet-lab@git+{ELSEWHERE}"]
    assert said == f"resnet-lab installed; profile {profile}"


def test_an_address_too_long_for_the_cell_is_refused():
    with pytest.raises(SystemExit, match="8 lines of 77 columns"):
        sync_book.install_cell("https://example.org/" + "x" * 60)


# ---------------------------------------------------------------- launch buttons


def _expected_launch_links(page: str) -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    org_repo = repo["url"].removeprefix("https://github.com/").strip("/")
    branch, book = repo.get("branch", "main"), repo.get("path_to_book", "").strip("/")
    path = f"{book}/{page}.ipynb" if book else f"{page}.ipynb"
    colab = f"{config['launch_buttons']['colab_url']}/github/{org_repo}/blob/{branch}/{path}"
    binder = (
        f"{config['launch_buttons']['binderhub_url']}/v2/gh/{org_repo}/{branch}?urlpath=tree/{path}"
    )
    return colab, binder


def launch_links(html: str) -> set[str]:
    return {
        h.replace("&amp;", "&")
        for h in re.findall(r'href="([^"]+)"', html)
        if "colab.research.google.com" in h or "mybinder.org" in h
    }


def test_launch_buttons_open_each_chapters_ipynb(tmp_path):
    """Build the pages without executing them (a few seconds) and read their Colab and Binder
    links: book/NN_*.ipynb under repository.url. The theme links the .ipynb only when the pair
    sits beside the chapter at build time."""
    assert repo_is_github(), "repository.url must be a github.com address for the Colab button"
    config = (
        (ROOT / "_config.yml")
        .read_text()
        .replace("execute_notebooks: cache", 'execute_notebooks: "off"')
        # a local extension's folder is found from the config's own folder: name it whole
        .replace("editions: tools", f"editions: {ROOT / 'tools'}")
    )
    (tmp_path / "config.yml").write_text(config)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run(
        [
            str(jb),
            "build",
            str(ROOT),
            "--config",
            str(tmp_path / "config.yml"),
            "--path-output",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for chapter in CHAPTERS:
        html = (tmp_path / "_build" / "html" / "book" / f"{chapter.stem}.html").read_text()
        assert launch_links(html) == set(_expected_launch_links(f"book/{chapter.stem}")), (
            f"{chapter.name}: launch buttons {sorted(launch_links(html))}"
        )


def repo_is_github() -> bool:
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    return re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", url) is not None
