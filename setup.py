"""The wheel carries the records the book reads, from the one copy in git.

``build_py`` copies every JSON record of ``results/``, and the weights that
``resnet_lab.lab.records.SHIPPED_WEIGHTS`` names, into ``resnet_lab/_results`` of the build, so
``pip install .`` and ``pip wheel .`` ship them; an editable install reads ``results/`` in
place and copies nothing. Everything else is configured in pyproject.toml.
"""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _records_module():
    spec = importlib.util.spec_from_file_location(
        "_records", ROOT / "resnet_lab" / "lab" / "records.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # standard library only: nothing else is installed yet
    return module


def shipped_records(results: Path) -> list[Path]:
    """The files of ``results`` that the wheel ships, relative to it."""
    weights = [Path(w) for w in _records_module().SHIPPED_WEIGHTS]
    missing = [str(w) for w in weights if not (results / w).is_file()]
    if missing:
        raise SystemExit(
            f"cannot build: {results} lacks the weights the book loads {missing}; "
            "build from a full checkout (git clone), not a partial copy"
        )
    return sorted(p.relative_to(results) for p in results.rglob("*.json")) + weights


class BuildWithRecords(build_py):
    """build_py, plus results/ (filtered) copied into the package as resnet_lab/_results."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's results/ directly
        target = Path(self.build_lib) / "resnet_lab" / "_results"
        shutil.rmtree(target, ignore_errors=True)  # no stale record from an earlier build
        for rel in shipped_records(ROOT / "results"):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / "results" / rel, target / rel)


setup(cmdclass={"build_py": BuildWithRecords})
