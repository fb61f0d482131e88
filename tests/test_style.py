"""The book's figure style: figures as wide as the column, no text under MIN_PX on the page."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from resnet_lab.book import diagrams, mistakes, style, viz
from resnet_lab.checkpoints import History

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LONG_NOTE = "a source note that runs on, as the book's do " * 6


def page_px(fig) -> tuple[float, str]:
    """The smallest text of ``fig`` in pixels on the page, and that text: its PNG (as the
    notebook saves it) is shown at its natural width, or the column's when wider."""
    record = style.text_record(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    natural = Image.open(buf).width
    shown = min(natural, style.COLUMN_PX)
    return record["min_pt"] * record["dpi"] / 72 * shown / natural, record["smallest"]


def _history(n: int = 3) -> History:
    epochs = [
        dict(
            epoch=e, train_loss=2 / e, train_acc=0.3 * e / n, test_loss=2 / e, test_acc=0.3, lr=0.1
        )
        for e in range(1, n + 1)
    ]
    for r in epochs:
        r["seconds"] = 1.0
    return History(epochs, {"model": "resnet20", "hardware": "a CPU", "data": "CIFAR-10"})


def test_the_smallest_text_is_readable_in_a_full_width_figure():
    assert style.SMALL * style.PX_PER_PT >= style.MIN_PX + 1
    assert 0.95 <= style.WIDTH * style.DPI / style.COLUMN_PX <= 1.1  # shown near natural size


def test_text_record_finds_the_smallest_text_drawn():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("title", fontsize=12)
    ax.text(0.5, 0.5, "tiny", fontsize=5)
    ax.text(0.5, 0.2, "", fontsize=2)  # empty text draws nothing
    record = style.text_record(fig)
    plt.close(fig)
    assert record["min_pt"] == 5 and record["smallest"] == "tiny" and record["dpi"] == fig.dpi


def test_text_record_ignores_text_that_is_not_drawn():
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "hidden", fontsize=3, visible=False)
    ax.axis("off")
    ax.set_title("shown", fontsize=11)
    record = style.text_record(fig)
    plt.close(fig)
    assert record["min_pt"] == 11 and record["texts"] == 1


def test_book_style_leaves_the_readers_settings_alone():
    before = dict(matplotlib.rcParams)
    with style.book_style():
        assert matplotlib.rcParams["figure.figsize"] == [style.WIDTH, 3.4]
    assert dict(matplotlib.rcParams) == before


FIGURES = {
    "show_images": lambda: viz.show_images(
        torch.zeros(20, 3, 32, 32, dtype=torch.uint8),
        torch.arange(20) % 10,
        CLASSES,
        ncols=10,
        source=LONG_NOTE,
    ),
    "show_predictions": lambda: mistakes.show_predictions(
        torch.zeros(8, 3, 32, 32, dtype=torch.uint8),
        torch.tensor([0, 1, 2, 3, 5, 5, 6, 7]),
        torch.arange(8),
        CLASSES,
        source=LONG_NOTE,
    ),
    "plot_confusion": lambda: mistakes.plot_confusion(
        {"SGD": torch.ones(10, 10, dtype=torch.long), "Adam": torch.eye(10, dtype=torch.long)},
        CLASSES,
        source=LONG_NOTE,
    ),
    "plot_history": lambda: viz.plot_history(
        [_history(), _history(), _history()], source=LONG_NOTE
    ),
    "plot_mean_sd": lambda: viz.plot_mean_sd(
        {"resnet20, one view": (0.9, 0.01, 3), "plain20": (0.8, 0.02, 3)},
        ylabel="test accuracy (%)",
        source=LONG_NOTE,
    ),
    "shortcut_options": diagrams.shortcut_options,
    "residual_paths": diagrams.residual_paths,
}


@pytest.mark.parametrize("name", FIGURES)
def test_book_figures_fit_the_column_with_readable_text(name):
    fig = FIGURES[name]()
    px, smallest = page_px(fig)
    plt.close(fig)
    assert fig.get_size_inches()[0] <= style.WIDTH + 1e-6
    assert px >= style.MIN_PX, f"{name}: {smallest!r} is {px:.1f} px on the page"


def test_image_grid_has_no_empty_band():
    """The saved grid is as tall as its rows of images and titles, and no taller."""
    fig = viz.show_images(torch.zeros(16, 3, 32, 32, dtype=torch.uint8), titles=["cat"] * 16)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    png = Image.open(buf)
    rows_in = 2 * (style.WIDTH / 8 + style.SMALL * 1.3 / 72)
    pad = 2 * 0.1  # savefig's pad_inches above and below
    assert png.height <= (rows_in + pad + 0.05) * style.DPI, (png.size, rows_in)


def test_a_long_verdict_fits_the_column():
    from resnet_lab.book.exercises import NotAttempted

    message = "two_basic_blocks(J_A, J_B, d_A, d_B) still raises NotImplementedError: " * 2
    lines = NotAttempted(message)._render_traceback_()
    assert len(lines) > 1 and all(len(line) <= 77 for line in lines)
    assert " ".join(line.strip() for line in lines) == f"NotAttempted: {message}".strip()


def test_fit_wraps_long_lines_to_the_column_and_keeps_the_rest():
    from resnet_lab.blocks import BasicBlock

    text = str(BasicBlock(16, 16))
    fitted = style.fit(text)
    assert max(len(line) for line in text.splitlines()) > style.COLUMN_CHARS  # torch's repr
    assert all(len(line) <= style.COLUMN_CHARS for line in fitted.splitlines())
    assert fitted.split() == text.split()  # same words, in the same order
    assert style.fit("short\n  indented") == "short\n  indented"


def test_the_depth_players_frames_carry_their_text_record():
    import base64
    import json
    import re

    from resnet_lab.book.widgets import depth_animation

    images = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    html, _ = depth_animation(images, torch.arange(4), depths=(8, 14), caption=LONG_NOTE)
    frames = re.findall(r'data:image/png;base64,([^"]+)"', html.data)
    assert len(frames) == 2
    b64 = re.sub(r"[^A-Za-z0-9+/=]", "", frames[0])  # the player breaks its lines with a backslash
    png = Image.open(io.BytesIO(base64.b64decode(b64)))
    record = json.loads(png.text[style.RECORD_KEY])
    shown = min(png.width, style.COLUMN_PX)
    assert record["min_pt"] * record["dpi"] / 72 * shown / png.width >= style.MIN_PX


def test_history_with_long_labels_keeps_its_legend_in_the_column():
    runs = [_history() for _ in range(3)]
    labels = [
        f"alternating flips + BN biases at 4x + progressive resizing, run {i}" for i in range(3)
    ]
    fig = viz.plot_history(runs, labels, title="recorded runs", source=LONG_NOTE)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    assert Image.open(buf).width <= (style.WIDTH + 0.3) * style.DPI  # the column, and a margin
