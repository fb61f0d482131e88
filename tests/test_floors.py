"""The package's three floors (issue 28): the core (``resnet_lab/``), the lab
(``resnet_lab/lab/`` and ``resnet_lab/__main__.py``) and the book's instruments
(``resnet_lab/book/``). Imports run only downward; ``import resnet_lab`` and the core stay light;
the core stays small enough to read; no function anywhere is over 60 lines.

Each check is a function of module sources, proved here to fail on a planted violation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_lab"
FLOORS = ("core", "lab", "book")  # bottom to top
CORE_LINES = 3000
FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    """``resnet_lab/lab/cli.py`` -> ``resnet_lab.lab.cli``; a package's ``__init__`` is the
    package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str | None:
    """The floor of a module of the package (None outside it): the command line's entry point,
    ``resnet_lab.__main__``, is the lab's."""
    parts = module.split(".")
    if parts[0] != "resnet_lab":
        return None
    if len(parts) > 1 and parts[1] in ("lab", "book"):
        return parts[1]
    return "lab" if parts[1:] == ["__main__"] else "core"


def imported_modules(source: str, module: str) -> list[tuple[int, list[str]]]:
    """(line, modules) of every import statement in ``source`` (module ``module``), at any
    depth, relative ones resolved; ``from a import b`` names ``a`` and ``a.b`` (in case ``b`` is
    a module)."""
    package = module.split(".") if module in _PACKAGES else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[: len(package) - node.level + 1]
                base = ".".join([*stem, base] if base else stem)
            found.append((node.lineno, [base, *(f"{base}.{a.name}" for a in node.names)]))
    return found


def upward_imports(sources: dict[str, str]) -> list[str]:
    """Every import statement, in ``{module: source}``, of a module on a higher floor than the
    importer's."""
    bad = []
    for module, source in sources.items():
        mine = floor_of(module)
        for line, targets in imported_modules(source, module):
            for target in targets:
                theirs = floor_of(target)
                if theirs is not None and FLOORS.index(theirs) > FLOORS.index(mine):
                    bad.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
                    break
    return bad


def long_functions(sources: dict[str, str], limit: int = FUNCTION_LINES) -> list[str]:
    """Every function or method of ``{module: source}`` over ``limit`` lines, decorators and
    docstring included."""
    bad = []
    for module, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    bad.append(f"{module}.{node.name}: {lines} lines")
    return bad


def core_lines(sources: dict[str, str]) -> int:
    """The lines of the core's modules among ``{module: source}``."""
    return sum(len(s.splitlines()) for m, s in sources.items() if floor_of(m) == "core")


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


_PACKAGES = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
SOURCES = package_sources()


# ---------------------------------------------------------------------------- the package


def test_every_module_has_a_floor():
    assert {floor_of(m) for m in SOURCES} == set(FLOORS)
    assert floor_of("resnet_lab.__main__") == "lab" and floor_of("resnet_lab.train") == "core"
    assert len(SOURCES) > 30  # the walk found the package


def test_imports_run_only_downward():
    assert upward_imports(SOURCES) == []


def test_the_core_is_at_most_3000_lines():
    lines = core_lines(SOURCES)
    assert lines <= CORE_LINES, f"the core is {lines} lines, over {CORE_LINES}"


def test_no_function_is_over_60_lines():
    assert long_functions(SOURCES) == []


def test_train_is_at_most_40_lines_and_claims_no_folder():
    train = next(
        n
        for n in ast.parse(SOURCES["resnet_lab.train"]).body
        if isinstance(n, ast.FunctionDef) and n.name == "train"
    )
    assert train.end_lineno - train.lineno + 1 <= 40
    names = {n.id for n in ast.walk(train) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(train) if isinstance(n, ast.Attribute)}
    assert not names & {"claim", "RunLock", "run_folder", "check_writable", "overwrite"}


CORE_MODULES = sorted(m for m in SOURCES if floor_of(m) == "core")


def heavy_imports(modules: list[str], path: Path = PACKAGE.parent) -> list[str]:
    """The modules of matplotlib, ipywidgets and IPython that importing ``modules`` (from
    ``path``) pulls in, in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'ipywidgets', 'IPython')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=path)
    assert out.returncode == 0, out.stderr[-2000:]
    return ast.literal_eval(out.stdout.strip())


def test_the_core_imports_neither_matplotlib_nor_ipywidgets():
    """``import resnet_lab``, and every module of the core."""
    assert "resnet_lab" in CORE_MODULES and "resnet_lab.train" in CORE_MODULES
    assert heavy_imports(CORE_MODULES) == []


# ---------------------------------------------------------------------------- the checks can fail


@pytest.mark.parametrize(
    "module, source",
    [
        ("resnet_lab.train", "from resnet_lab.lab.runfolder import claim\n"),
        ("resnet_lab.models", "def f():\n    import resnet_lab.book.article\n"),
        ("resnet_lab.loader", "from .lab import records\n"),
        ("resnet_lab.lab.cli", "from resnet_lab.book import viz\n"),
        ("resnet_lab.lab.results", "from ..book.viz import plot_history\n"),
        ("resnet_lab.__main__", "from resnet_lab.book.widgets import DepthExplorer\n"),
        ("resnet_lab", "from resnet_lab import lab\n"),
    ],
)
def test_an_upward_import_is_found(module, source):
    assert len(upward_imports({module: source})) == 1


@pytest.mark.parametrize(
    "module, source",
    [
        ("resnet_lab.book.viz", "from resnet_lab.lab.results import load_results\n"),
        ("resnet_lab.lab.cli", "from resnet_lab.train import train\nimport torch\n"),
        ("resnet_lab.lab.results", "from .records import results_dir\n"),
        ("resnet_lab.train", "from .run import build_run\nfrom . import checkpoints\n"),
    ],
)
def test_a_downward_import_passes(module, source):
    assert upward_imports({module: source}) == []


def test_a_long_function_is_found():
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    short = "def f():\n" + body  # 60 lines
    long = "@decorated\ndef f():\n" + body  # 61, its decorator counted
    method = "class C:\n    def f(self):\n" + body.replace("    ", "        ") + "        pass\n"
    assert long_functions({"resnet_lab.m": short}) == []
    assert long_functions({"resnet_lab.m": long}) == ["resnet_lab.m.f: 61 lines"]
    assert long_functions({"resnet_lab.m": method}) == ["resnet_lab.m.f: 61 lines"]


def test_an_oversized_core_is_found():
    big = {"resnet_lab.a": "x = 1\n" * 2000, "resnet_lab.b": "x = 1\n" * 1001}
    assert core_lines(big) == 3001 > CORE_LINES
    big["resnet_lab.b"] = "x = 1\n" * 1000
    big["resnet_lab.lab.c"] = big["resnet_lab.book.d"] = big["resnet_lab.__main__"] = "x\n" * 999
    assert core_lines(big) == CORE_LINES  # the floors above do not count


def test_a_heavy_import_is_found(tmp_path):
    (tmp_path / "planted.py").write_text("import resnet_lab\nimport matplotlib.pyplot\n")
    (tmp_path / "resnet_lab").symlink_to(PACKAGE)
    assert "matplotlib.pyplot" in heavy_imports(["resnet_lab", "planted"], tmp_path)


# ---------------------------------------------------------------------------- the README's map


def readme_map(readme: str) -> set[str]:
    """The modules the README's map names (``resnet_lab/lab/cli.py`` ...): the ``.py`` names
    under each floor's folder line, in the fenced block whose first line names THE CORE."""
    block = readme[readme.index("\nresnet_lab/ ", readme.index("```\nresnet_lab/")) :]
    folder, named = "resnet_lab", set()
    for line in block.split("```", 1)[0].splitlines():
        if line.startswith("resnet_lab/"):
            folder = line.split()[0].rstrip("/")
        elif line.startswith("  "):
            names = line.split("  ")[1].strip()
            named |= {
                f"{folder}/{n.strip()}" for n in names.split(",") if n.strip().endswith(".py")
            }
    return named


def tree_map(package: Path = PACKAGE) -> set[str]:
    """The modules a map must name: all but ``__init__``/``__main__`` and the exercises' own."""
    return {
        p.relative_to(package.parent).as_posix()
        for p in package.rglob("*.py")
        if p.stem not in ("__init__", "__main__") and "exercises" not in p.parts
    }


def test_the_readmes_map_names_every_module_and_no_other():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    named, tree = readme_map(readme), tree_map()
    assert named == tree, f"not in the tree: {named - tree}; not on the map: {tree - named}"
    planted = readme.replace("  finetune.py ", "  finetuning.py ")
    assert readme_map(planted) != tree  # a renamed module is caught
    count = len(list(PACKAGE.rglob("*.py")))
    assert f"package's\n{count} modules" in readme, f"the README's module count is not {count}"
