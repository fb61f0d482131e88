"""Run every chapter of the book as a test: nbval on MyST Markdown notebooks.

nbval collects only ``.ipynb`` files. Here each ``book/NN_*.md`` chapter (a MyST notebook with
a jupytext header) is read with jupytext and handed to nbval, one test item per code cell, run
in a kernel started in the chapter's own folder. Cells tagged ``raises-exception`` must raise.
The output-less ``.ipynb`` pairs (for the Colab and Binder buttons) are not collected here;
tests/test_book.py checks they are in sync with the chapters.
"""

from __future__ import annotations

import os
from collections import defaultdict

# the kernels inherit the environment: CI and `make test` run the book's quick profile
os.environ.setdefault("RESNET_LAB_PROFILE", "smoke")

collect_ignore_glob = ["book/*.ipynb", "_build/*"]


def _is_myst_notebook(path) -> bool:
    if path.suffix != ".md" or path.parent.name != "book":
        return False
    head = path.read_text(encoding="utf-8")[:600]
    return head.startswith("---") and "kernelspec:" in head


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)) and _is_myst_notebook(
        file_path
    ):
        return MystNotebookFile.from_parent(parent, path=file_path)
    return None


try:
    from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags
except ImportError:  # nbval missing: the chapters are simply not collected
    pass
else:

    class MystNotebookFile(IPyNbFile):
        """A MyST Markdown chapter, collected as if it were the equivalent .ipynb."""

        def collect(self):
            import jupytext

            self.nb = jupytext.read(str(self.fspath))
            self.add_marker("slow")  # a chapter runs for minutes: `pytest -m "not slow"` skips it
            cell_num = 0
            for cell in self.nb.cells:
                if cell.cell_type != "code":
                    continue
                options = defaultdict(bool, find_metadata_tags(cell.metadata))
                options.update(dict(find_comment_markers(cell.source)))
                options.setdefault("check", self.compare_outputs)
                yield IPyNbCell.from_parent(
                    self, name=f"Cell {cell_num}", cell_num=cell_num, cell=cell, options=options
                )
                cell_num += 1
