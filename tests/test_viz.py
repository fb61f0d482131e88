"""resnet_lab.book.viz: figures drawn from data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from resnet_lab.book.mistakes import confusion_matrix, most_confused, plot_confusion, show_mistakes
from resnet_lab.book.viz import plot_lr_schedules, plot_training_error
from resnet_lab.checkpoints import History

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _text(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    counts = confusion_matrix(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 2]))
    assert counts[0, 1] == 1 and counts[1, 1] == 1 and counts[2, 2] == 1 and counts.sum() == 3


def test_plot_confusion_draws_one_panel_or_two_side_by_side():
    a = confusion_matrix(torch.arange(10), torch.arange(10))  # all right
    b = confusion_matrix(torch.zeros(10, dtype=torch.long), torch.arange(10))  # all "c0"
    one = plot_confusion(a, CLASSES)
    assert len([ax for ax in one.axes if ax.images]) == 1
    two = plot_confusion({"right": a, "wrong": b}, CLASSES)
    panels = [ax for ax in two.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["right", "wrong"]
    # row-normalised percentages: 100 on the diagonal of a, 100 in column 0 of b
    assert _text(panels[0]) == ["100"] * 10 and _text(panels[1]) == ["100"] * 10
    assert panels[1].images[0].get_array()[5, 0] == 100
    assert panels[0].images[0].get_array()[5, 0] == 0


def test_show_mistakes_shows_only_wrong_predictions_titled_true_to_predicted():
    labels = torch.tensor([0, 1, 2, 3])
    pred = torch.tensor([0, 2, 2, 1])
    fig = show_mistakes(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), labels, pred, CLASSES)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["c1→c2", "c3→c1"]


def test_plot_lr_schedules_puts_steps_on_an_epoch_axis():
    fig = plot_lr_schedules({"up": [0.1, 0.2, 0.3, 0.4]}, steps_per_epoch=2)
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0, 0.5, 1, 1.5]
    assert list(line.get_ydata()) == [0.1, 0.2, 0.3, 0.4]


def test_most_confused_counts_both_ways():
    counts = torch.zeros(4, 4, dtype=torch.long)
    counts[0, 1], counts[1, 0] = 3, 3  # 0 and 1: 6 both ways
    counts[2, 3] = 5  # 2 for 3: 5, one way only
    counts.fill_diagonal_(50)
    assert most_confused(counts) == (0, 1, 6)
    counts[3, 2] = 2
    assert most_confused(counts) == (2, 3, 7)
    assert counts[0, 0] == 50  # the caller's matrix is left as it was


def test_plot_training_error_draws_error_plain_dashed():
    def run(accs, name):
        return History(
            epochs=[{"epoch": i + 1, "train_acc": a, "seconds": 30.0} for i, a in enumerate(accs)],
            meta={"model": name, "data": "made-up numbers", "hardware": "none"},
        )

    runs = {"plain20": run([0.5, 0.75], "plain20"), "resnet20": run([0.6, 0.9], "resnet20")}
    fig = plot_training_error(runs, source="a made-up race")
    plain, residual = fig.axes[0].get_lines()
    assert plain.get_linestyle() == "--" and residual.get_linestyle() == "-"
    assert list(plain.get_ydata()) == [50.0, 25.0]  # error, in percent
    assert [round(y, 6) for y in residual.get_ydata()] == [40.0, 10.0]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(runs)
    assert fig.texts[-1].get_text() == "a made-up race"
    # without a source, the caption says what made the first run
    fig2 = plot_training_error(runs)
    assert "plain20, 2 epochs" in fig2.texts[-1].get_text()
    plt.close(fig)
    plt.close(fig2)
