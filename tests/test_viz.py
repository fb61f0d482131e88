import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from resnet_lab.checkpoints import History
from resnet_lab.viz import plot_training_error


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
