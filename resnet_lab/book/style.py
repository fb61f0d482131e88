"""The book's figure style: one place sets how wide a figure is and how large its text.

The rendered book (sphinx-book-theme 1.3, a 1280 px window) shows a cell's output in a column
688 px wide. A figure ``WIDTH`` inches wide at ``DPI`` is about as wide as that column, so it is
shown near its natural size and one point of text is ``PX_PER_PT`` pixels on the page. The
smallest text a figure may carry (``SMALL``: source notes, legends, the class names over image
grids) is then about 11 px; nothing in a figure may fall under ``MIN_PX``.

Every figure function of :mod:`resnet_lab.book` draws inside :func:`book_style` (the decorator
:func:`book_figure`), so its size and fonts come from :data:`RC` here. In a notebook, each
figure's PNG also carries a record of the smallest text drawn in it (:func:`text_record`), which
the browser check of the built book (``tests_browser/test_page_fits.py``) turns into pixels at
the width the page really shows the image. Printed output fits the same column in
``COLUMN_CHARS`` characters; :func:`fit` wraps a long repr to it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import textwrap
from collections.abc import Callable

import matplotlib as mpl
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure

COLUMN_PX = 688  # width of a cell's output column in the built book at 1280 px (measured)
WIDTH = 7.0  # inches: a figure as wide as the column
DPI = 100  # pixels per inch of the PNG; WIDTH * DPI = 700 px, shown at 688
PX_PER_PT = COLUMN_PX / (72 * WIDTH)  # 1.37 px per point of text in a full-width figure
MIN_PX = 9.0  # the smallest text a reader should be asked to read, in CSS pixels
COLUMN_CHARS = 77  # characters of printed output that fit the column (14 px monospace)

TEXT = 10.0  # points: titles, labels, text in diagrams
TICKS = 9.0  # points: tick labels, table cells
SMALL = 8.0  # points: legends, source notes, names over image grids (about 11 px)

RC = {
    "figure.figsize": (WIDTH, 3.4),
    "figure.dpi": DPI,
    "savefig.dpi": "figure",
    "font.size": TEXT,
    "axes.titlesize": TEXT,
    "axes.labelsize": TEXT,
    "figure.titlesize": TEXT + 1,
    "xtick.labelsize": TICKS,
    "ytick.labelsize": TICKS,
    "legend.fontsize": SMALL,
    "legend.title_fontsize": SMALL,
}

RECORD_KEY = "resnet_lab:text"  # the PNG text chunk that holds text_record(fig)


def fit(text, width: int = COLUMN_CHARS) -> str:
    """``str(text)`` with every line longer than ``width`` wrapped at spaces, its continuation
    indented four more than the line: printed output that fits the book's column."""
    lines = []
    for line in str(text).splitlines():
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        lines += textwrap.wrap(line, width, subsequent_indent=indent) or [line]
    return "\n".join(lines)


def book_style():
    """A context in which new figures take the book's width, resolution and font sizes."""
    return mpl.rc_context(RC)


def book_figure(fn: Callable) -> Callable:
    """Run a figure function inside :func:`book_style`; the figure it returns is laid out
    there, so that ticks made lazily also take the book's sizes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with book_style():
            result = fn(*args, **kwargs)
            if isinstance(result, Figure):
                result.draw_without_rendering()
        return result

    return wrapper


def grid_size(nrows: int, ncols: int, *, title: float = 0.0, note: float = 0.0):
    """(width, height) in inches of a grid of square panels across the column, with ``title``
    inches over each row for a line of text and ``note`` inches under the grid."""
    cell = WIDTH / ncols
    return WIDTH, nrows * (cell + title) + note


class _TextRecorder(RendererAgg):
    """An Agg renderer that notes the size in points of every piece of text it draws."""

    def __init__(self, fig: Figure) -> None:
        width, height = fig.bbox.size
        super().__init__(int(width) or 1, int(height) or 1, fig.dpi)
        self.texts: list[tuple[float, str]] = []

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            self.texts.append((prop.get_size_in_points(), s))
        super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)


def text_record(fig: Figure) -> dict:
    """The smallest text drawn in ``fig`` (points, and the text), its width in inches and its
    dpi: what the browser check needs to say how many pixels that text is on the page."""
    renderer = _TextRecorder(fig)
    fig.draw(renderer)
    width, _ = fig.get_size_inches()
    record = {"dpi": float(fig.dpi), "width_in": round(float(width), 3), "texts": 0}
    if renderer.texts:
        pt, text = min(renderer.texts, key=lambda t: t[0])
        record.update(min_pt=round(pt, 2), smallest=text[:60], texts=len(renderer.texts))
    return record


def _png_with_record(fig: Figure, **print_kwargs) -> str:
    """The inline backend's PNG of ``fig`` (base64), with :func:`text_record` in a text chunk."""
    from IPython.core.pylabtools import print_figure

    metadata = {RECORD_KEY: json.dumps(text_record(fig))}
    kwargs = {"bbox_inches": "tight", **print_kwargs}
    return print_figure(fig, "png", base64=True, metadata=metadata, **kwargs)


def record_figures_in_notebook() -> bool:
    """Make IPython's PNG of every matplotlib figure carry its text record; False outside
    IPython. The inline backend is set up first, so that it does not replace the formatter."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or "png" not in _inline_formats():
        return False
    kwargs = _inline_print_kwargs()
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, functools.partial(_png_with_record, **kwargs))
    return True


def _inline_formats() -> set:
    mpl.get_backend()  # resolve the backend now: the inline one sets its formatters up first
    with contextlib.suppress(ImportError):
        from matplotlib_inline.backend_inline import InlineBackend

        return set(InlineBackend.instance().figure_formats)
    return set()


def _inline_print_kwargs() -> dict:
    from matplotlib_inline.backend_inline import InlineBackend

    return dict(InlineBackend.instance().print_figure_kwargs)


record_figures_in_notebook()
