import pytest
import torch

pytest.importorskip("ipywidgets")

from resnet_lab.book.widgets import DepthExplorer, LesionExplorer, TrainingRace, depth_animation
from resnet_lab.cifar10 import CLASSES, CifarData


@pytest.fixture(autouse=True)
def agg_backend():
    import matplotlib

    matplotlib.use("Agg")


def _batch(n=16):
    torch.manual_seed(0)
    return torch.randn(n, 3, 32, 32), torch.arange(n) % 10


def test_depth_explorer_responds_to_sliders():
    x, y = _batch()
    ex = DepthExplorer(x, y, depth=8)
    assert set(ex.current) == {"resnet8", "plain8"}
    assert len(ex.current["resnet8"]["grad_norms"]) == 8
    ex.depth.value = 20
    assert set(ex.current) == {"resnet20", "plain20"}
    assert len(ex.current["resnet20"]["grad_norms"]) == 20
    assert "269,722 parameters" in ex.info.value
    ex.skip.value = False
    assert "plain20" in ex.info.value
    ex.compare.value = False
    assert set(ex.current) == {"plain20"}
    ex.shortcut.value = "B"
    ex.skip.value = True
    assert ex.current["resnet20 (shortcut B)"]["params"] > 269_722  # projections add parameters
    ex.zero_init.value = True
    assert "zero-init" in next(iter(ex.current))
    # going back is instant: the result comes from the cache
    n_cached = len(ex.cache)
    ex.depth.value = 8
    ex.depth.value = 20
    assert len(ex.cache) == n_cached + 1  # only depth 8 with these settings was new


def test_depth_animation_is_self_contained_html():
    x, y = _batch(8)
    html, frames = depth_animation(x, y, depths=(8, 14))
    assert set(frames) == {8, 14} and set(frames[8]) == {"resnet", "plain"}
    text = html.data
    assert "<script" in text and "anim" in text.lower()
    assert "http://" not in text and "https://" not in text  # nothing fetched from a network
    assert text.count("data:image/png;base64") == 2  # one frame per depth


def _tiny_data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(60) % 10
    return CifarData(images, labels, images[:20], labels[:20], CLASSES, "synthetic test data")


def test_training_race_caches_results():
    race = TrainingRace(_tiny_data(), depth=8, epochs=1, batch_size=20)
    assert "press" in race.status.value
    runs = race.run()
    assert set(runs) == {"plain8", "resnet8"} and all(len(h) == 1 for h in runs.values())
    assert "cached" in race.status.value
    again = race.run()
    assert again is runs  # no retraining
    race.depth.value = 14
    assert "press" in race.status.value
    race.depth.value = 8
    assert "cached" in race.status.value


def test_lesion_explorer():
    from resnet_lab.loader import CifarLoader
    from resnet_lab.models import cifar_resnet

    data = _tiny_data()
    loader = CifarLoader(data.test_images, data.test_labels, 10, train=False, device="cpu")
    ex = LesionExplorer(cifar_resnet(14), cifar_resnet(14, skip=False), loader)
    assert len(ex.curves["resnet"]) == 6
    ex.block.value = 2
    assert ex.current()["plain"] is None and "cannot be removed" in ex.info.value
    ex.block.value = 1
    assert ex.current()["plain"] is not None and "block 1 removed" in ex.info.value
    # the mean over removable blocks leaves out those that cannot be removed
    ex.curves = {"resnet": [0.5, 0.7, 0.9], "plain": [None, 0.2, 0.4]}
    assert ex.mean_after() == pytest.approx({"resnet": 0.7, "plain": 0.3})


# ---------------------------------------------------------------- bad input: one line, or right


def _uint8_batch(n=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(n)


def test_depth_explorer_takes_the_uint8_images_load_cifar10_returns():
    """It used to fail with "expected scalar type Byte"; now uint8 images are normalised as
    the loaders normalise them, and the explorer shows what the floats would show."""
    from resnet_lab.loader import normalize

    images, labels = _uint8_batch()
    ex = DepthExplorer(images, labels, depth=8)
    same = DepthExplorer(normalize(images), labels, depth=8)
    assert ex.current["resnet8"]["grad_norms"] == same.current["resnet8"]["grad_norms"]
    _, frames = depth_animation(images, labels, depths=(8,))
    assert frames[8]["resnet"]["grad_norms"] == ex.current["resnet8"]["grad_norms"]


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: DepthExplorer(*_batch(), depth=21),
            r"depth must be 6n\+2, one of 8, 14, 20, .*, 110; got 21",
        ),
        (lambda: DepthExplorer(*_batch(0)), "the batch holds no images"),
        (
            lambda: DepthExplorer(torch.full((4, 3, 32, 32), float("nan")), torch.arange(4)),
            "NaN or infinite",
        ),
        (lambda: DepthExplorer(torch.zeros(4, 3, 32, 32), torch.arange(3)), "one per image"),
        (lambda: depth_animation(*_batch(4), depths=(8, 9)), "got 9"),
        (lambda: TrainingRace(_tiny_data(), depth=110), r"one of 8, .*, 62; got 110"),
        (lambda: TrainingRace(_tiny_data(), epochs=0), "epochs must be 1 to 30"),
    ],
    ids=["depth 21", "empty batch", "NaN batch", "labels short", "frame depth", "race", "epochs"],
)
def test_explorers_refuse_bad_settings_in_one_line(make, message):
    """depth=21 used to raise ipywidgets' TraitError; an empty or NaN batch showed a false
    "last conv gradient is 0"."""
    with pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value)


def test_the_ratio_says_when_the_gradients_are_not_finite():
    from resnet_lab.book.widgets import _gradient_ratio

    assert _gradient_ratio([2.0, 0.5, 0.1]) == "4"  # first conv over last conv (g[-2])
    assert _gradient_ratio([2.0, 0.0, 0.5]) == "n/a (last conv gradient is 0)"
    assert _gradient_ratio([float("nan")] * 3) == "n/a (the gradients are not finite)"


def _loader(n):
    from resnet_lab.loader import CifarLoader

    data = _tiny_data()
    images, labels = data.test_images[:n], data.test_labels[:n]
    return CifarLoader(images, labels, 10, train=False, device="cpu")


def test_lesion_explorer_refuses_an_empty_loader_and_two_depths():
    """An empty loader showed "keeps 0.0% (intact 0.0%)"; networks of two depths raised
    IndexError."""
    from resnet_lab.models import cifar_resnet

    with pytest.raises(ValueError, match="the loader yields no images"):
        LesionExplorer(cifar_resnet(8), cifar_resnet(8, skip=False), _loader(0))
    with pytest.raises(ValueError, match="resnet has 9 blocks and plain 3"):
        LesionExplorer(cifar_resnet(20), cifar_resnet(8, skip=False), _loader(10))


def test_the_players_buttons_use_glyphs_the_fonts_have():
    """Every character on the player's buttons is in matplotlib's DejaVu Sans (and WGL4, which
    the theme's Arial / Helvetica / Segoe UI cover); ⏮ ⏸ ⏭ were not, and showed as boxes."""
    import html
    import re

    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    x, y = _batch(4)
    page = depth_animation(x, y, depths=(8,))[0].data
    buttons = re.findall(r"<button[^>]*>(.*?)</button>", page, re.S)
    assert len(buttons) == 9 and "fa fa-" not in page
    font = FT2Font(font_manager.findfont("DejaVu Sans", fallback_to_default=False))
    for label in buttons:
        text = html.unescape(label).strip()
        missing = [c for c in text if font.get_char_index(ord(c)) == 0]
        assert text and not missing, f"{text!r}: DejaVu Sans lacks {missing}"
        assert all(c in WGL4_SUBSET for c in text), f"{text!r} leaves WGL4"


# the characters of WGL4 a player may use: ASCII and its arrows, blocks and shapes
WGL4_SUBSET = set("+-|") | set("\u2212\u25ba\u25c4\u258c\u2590\u25a0\u25b2\u25bc")
