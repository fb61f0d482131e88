"""Explorers for the book: move depth and skip connections and watch what changes.

Two forms of each:

- live ipywidgets (``DepthExplorer``, ``TrainingRace``) for Jupyter and Colab, where every move
  recomputes on a real batch of CIFAR-10 images (results cached, so going back is instant);
- kernel-free HTML (``depth_animation``) for the static book: frames precomputed at build time
  and rendered with matplotlib's ``FuncAnimation.to_jshtml()``, whose slider works with no
  kernel and no network.

ipywidgets and matplotlib are imported here only, never by ``import resnet_lab``.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from resnet_lab.book.analysis import depth_profile, lesion_curve
from resnet_lab.book.style import RECORD_KEY, SMALL, WIDTH, book_figure, book_style, text_record
from resnet_lab.config import TrainConfig
from resnet_lab.evaluation import evaluate
from resnet_lab.loader import normalize
from resnet_lab.models import cifar_resnet
from resnet_lab.train import seed_everything, train

DEPTHS = tuple(6 * n + 2 for n in range(1, 19))  # 8, 14, ..., 110


def checked_depth(depth, allowed: Sequence[int] = DEPTHS) -> int:
    """``depth`` if the slider offers it; else a ValueError that lists what it offers."""
    if isinstance(depth, bool) or depth not in allowed:
        raise ValueError(
            f"depth must be 6n+2, one of {', '.join(map(str, allowed))}; got {depth!r}"
        )
    return int(depth)


def checked_batch(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch the explorers can use: float images (B, 3, H, W), normalised from uint8 as
    ``load_cifar10`` returns them, and int64 labels (B,); a ValueError names what is wrong."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(getattr(images, "shape", ()))
        raise ValueError(f"images must be a tensor (B, 3, H, W), got shape {shape}")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels must be a tensor ({images.shape[0]},), one per image; got shape "
            f"{tuple(getattr(labels, 'shape', ()))}"
        )
    if images.shape[0] == 0:
        raise ValueError("the batch holds no images: pass at least one, e.g. images[:64]")
    if images.dtype == torch.uint8:
        images = normalize(images)  # as the loaders feed the networks
    elif not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("the images hold NaN or infinite values: pass real images")
    return images, labels.long()


class _Explorer:
    """What every explorer shares: a figure redrawn inside its Output widget, and display."""

    widget = None
    out = None

    @contextlib.contextmanager
    def _figure(self, ncols: int = 1, height: float = 3.2):
        """Clear the output, yield fresh axes (the book's style) to draw on, then show the
        figure there."""
        import matplotlib.pyplot as plt

        with self.out, book_style():
            self.out.clear_output(wait=True)
            fig, axes = plt.subplots(1, ncols, figsize=(WIDTH, height))
            yield axes
            fig.tight_layout()
            plt.show()
            plt.close(fig)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _draw_profiles(axes, profiles: dict[str, dict]) -> None:
    ax_g, ax_a = axes
    for label, p in profiles.items():
        style = "-" if "resnet" in p["name"] else "--"
        ax_g.plot(
            range(1, len(p["grad_norms"]) + 1),
            p["grad_norms"],
            style,
            marker="o",
            ms=2,
            label=label,
        )
        ax_a.plot(
            range(1, len(p["act_std"]) + 1), p["act_std"], style, marker="o", ms=2, label=label
        )
    ax_g.set(
        yscale="log",
        xlabel="weight layer (input → output)",
        ylabel="‖∂loss/∂W‖",
        title="gradient norm per layer",
    )
    ax_a.set(
        xlabel="residual block (input → output)", ylabel="std of output", title="signal per block"
    )
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend()


class DepthExplorer(_Explorer):
    """Depth (6n+2), skip on/off, shortcut type and zero-init for a freshly initialised CIFAR
    ResNet; shows gradient norms per layer, activation statistics per block and the parameter
    count, computed on the given batch (real CIFAR-10 images).

    Drive it from Python: ``ex.depth.value = 56`` recomputes; ``ex.current`` holds what is shown.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, depth: int = 20, seed: int = 0
    ) -> None:
        import ipywidgets as w

        checked_depth(depth)
        self.images, self.labels = checked_batch(images, labels)
        self.seed = seed
        self.cache: dict[tuple, dict] = {}
        self.depth = w.SelectionSlider(
            options=DEPTHS, value=depth, description="depth", continuous_update=False
        )
        self.skip = w.ToggleButtons(
            options=[("residual", True), ("plain", False)], value=True, description="skip"
        )
        self.shortcut = w.Dropdown(options=["A", "B", "C"], value="A", description="shortcut")
        self.zero_init = w.Checkbox(value=False, description="zero-init last BN")
        self.compare = w.Checkbox(value=True, description="show the other (skip on/off) too")
        self.info = w.HTML()
        self.out = w.Output()
        for control in (self.depth, self.skip, self.shortcut, self.zero_init, self.compare):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.depth, self.skip]),
                w.HBox([self.shortcut, self.zero_init, self.compare]),
                self.info,
                self.out,
            ]
        )
        self.current: dict[str, dict] = {}
        self.seconds = 0.0
        self.update()

    def settings(self, skip: bool | None = None) -> tuple:
        return (
            self.depth.value,
            self.skip.value if skip is None else skip,
            self.shortcut.value,
            self.zero_init.value,
        )

    def profile(self, settings: tuple) -> dict:
        if settings not in self.cache:
            depth, skip, shortcut, zero = settings
            self.cache[settings] = depth_profile(
                depth,
                self.images,
                self.labels,
                skip=skip,
                shortcut=shortcut,
                zero_init=zero,
                seed=self.seed,
            )
        return self.cache[settings]

    def update(self) -> None:
        t0 = time.perf_counter()
        shown = {self.profile(self.settings())["name"]: self.profile(self.settings())}
        if self.compare.value:
            other = self.profile(self.settings(skip=not self.skip.value))
            shown[other["name"]] = other
        self.current = shown
        self.seconds = time.perf_counter() - t0
        main = self.profile(self.settings())
        ratio = _gradient_ratio(main["grad_norms"])
        self.info.value = (
            f"<b>{main['name']}</b>: {main['params']:,} parameters; gradient ratio first/last conv "
            f"{ratio}; computed in {self.seconds:.2f} s"
        )
        with self._figure(ncols=2, height=3.4) as axes:
            _draw_profiles(axes, shown)


def _gradient_ratio(g: list[float]) -> str:
    """The first conv's gradient norm over the last conv's, as the explorer says it."""
    if not all(math.isfinite(v) for v in g):
        return "n/a (the gradients are not finite)"
    # with zero-initialised BN scales the last conv gets no gradient at all at initialisation
    return f"{g[0] / g[-2]:.3g}" if g[-2] > 0 else "n/a (last conv gradient is 0)"


@book_figure
def depth_animation(
    images: torch.Tensor,
    labels: torch.Tensor,
    depths: Sequence[int] = (8, 14, 20, 32, 44, 56),
    *,
    seed: int = 0,
    caption: str = "",
):
    """Kernel-free depth slider: one frame per depth, plain and residual side by side, as
    self-contained HTML (``IPython.display.HTML``) with matplotlib's JavaScript player.

    Returns ``(html, frames)`` where ``frames[depth] = {"resnet": profile, "plain": profile}``.
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    images, labels = checked_batch(images, labels)
    depths = [checked_depth(d) for d in depths]
    frames = {
        d: {
            kind: depth_profile(d, images, labels, skip=(kind == "resnet"), seed=seed)
            for kind in ("resnet", "plain")
        }
        for d in depths
    }
    g_all = [v for f in frames.values() for p in f.values() for v in p["grad_norms"]]
    a_all = [v for f in frames.values() for p in f.values() for v in p["act_std"]]
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.6))

    def draw(i):
        d = depths[i]
        for ax in axes:
            ax.clear()
        _draw_profiles(axes, {p["name"]: p for p in frames[d].values()})
        axes[0].set_ylim(min(g_all) / 2, max(g_all) * 2)
        axes[0].set_xlim(0, max(depths) + 1)
        axes[1].set_ylim(0, max(a_all) * 1.1)
        axes[1].set_xlim(0, (max(depths) - 2) // 2 + 1)
        fig.suptitle(f"depth {d}: freshly initialised ResNet-{d} and plain-{d}")
        if caption:
            fig.text(0.01, 0.01, caption, fontsize=SMALL, color="0.35", wrap=True)
        return []

    fig.tight_layout(rect=(0, 0.05, 1, 0.92))
    anim = FuncAnimation(fig, draw, frames=len(depths), interval=800, blit=False)
    html = offline_jshtml(_jshtml_with_text_record(anim, fig, draw, len(depths), fps=1.25))
    plt.close(fig)
    return HTML(html), frames


def _jshtml_with_text_record(anim, fig, draw, n: int, fps: float) -> str:
    """``anim.to_jshtml(default_mode="once")``, each frame's PNG carrying the smallest text of
    all the frames (:func:`resnet_lab.book.style.text_record`), as the book's figures do."""
    from matplotlib.animation import HTMLWriter

    records = []
    for i in range(n):
        draw(i)
        records.append(text_record(fig))
    smallest = min(records, key=lambda r: r.get("min_pt", float("inf")))
    metadata = {RECORD_KEY: json.dumps(smallest)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "player.html")
        writer = HTMLWriter(fps=fps, embed_frames=True, default_mode="once")
        anim.save(str(path), writer=writer, savefig_kwargs={"metadata": metadata})
        return path.read_text()


# The player's buttons as text. Only characters of WGL4, the set that Arial, Helvetica,
# Segoe UI, Liberation Sans and DejaVu Sans (the fonts the book's theme names, and matplotlib's)
# all cover: ⏮ ⏸ ⏭ (U+23xx) are missing from most of them and showed as empty boxes.
_FA_SYMBOLS = {
    "fa-minus": "&#x2212;",  # −
    "fa-plus": "+",
    "fa-fast-backward": "|&#x25C4;&#x25C4;",  # |◄◄ first frame
    "fa-step-backward": "|&#x25C4;",  # |◄
    "fa-play fa-flip-horizontal": "&#x25C4;",  # ◄ play backwards
    "fa-pause": "&#x258C;&#x258C;",  # ▌▌
    "fa-play": "&#x25BA;",  # ►
    "fa-step-forward": "&#x25BA;|",  # ►|
    "fa-fast-forward": "&#x25BA;&#x25BA;|",  # ►►| last frame
}


def offline_jshtml(html: str) -> str:
    """matplotlib's animation player loads its button icons from a CDN (Font Awesome); offline
    the buttons would be blank. Drop that stylesheet and put plain symbols in the buttons."""
    html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", html)
    return re.sub(
        r'<i class="fa ([^"]*)"></i>', lambda m: _FA_SYMBOLS.get(m.group(1), "&#x2022;"), html
    )


class TrainingRace(_Explorer):
    """Plain against residual at the chosen depth: a short run of each on (a subset of) the
    data, with live loss curves. Each (depth, epochs) result is cached, so going back is
    instant. Drive it from Python: ``race.depth.value = 20; race.run()``."""

    def __init__(
        self, data, *, depth: int = 20, epochs: int = 3, batch_size: int = 128, seed: int = 0
    ) -> None:
        import ipywidgets as w

        checked_depth(depth, DEPTHS[:10])
        if isinstance(epochs, bool) or epochs not in range(1, 31):
            raise ValueError(f"epochs must be 1 to 30 (the slider's range), got {epochs!r}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.results: dict[tuple[int, int], dict[str, object]] = {}
        self.depth = w.SelectionSlider(options=DEPTHS[:10], value=depth, description="depth")
        self.epochs = w.IntSlider(value=epochs, min=1, max=30, description="epochs")
        self.button = w.Button(description="race", button_style="primary")
        self.button.on_click(lambda _b: self.run())
        self.status = w.HTML()
        self.out = w.Output()
        self.depth.observe(lambda _c: self.show_cached(), names="value")
        self.epochs.observe(lambda _c: self.show_cached(), names="value")
        self.widget = w.VBox(
            [w.HBox([self.depth, self.epochs, self.button]), self.status, self.out]
        )
        self.show_cached()

    def key(self) -> tuple[int, int]:
        return (self.depth.value, self.epochs.value)

    def run(self) -> dict:
        """Train plain and residual at the current settings (or take them from the cache)."""
        key = self.key()
        if key not in self.results:
            cfg = TrainConfig(
                epochs=key[1],
                batch_size=self.batch_size,
                lr=0.1,
                schedule="onecycle",
                warmup=min(1, key[1] / 2),
                seed=self.seed,
            )
            runs: dict[str, object] = {}
            for skip in (False, True):
                seed_everything(self.seed)  # the same starting weights every time
                model = cifar_resnet(key[0], skip=skip)
                self.status.value = f"training {model.name} ..."
                runs[model.name] = train(
                    model,
                    self.data,
                    cfg,
                    progress=False,
                    on_epoch=lambda h, runs=runs, name=model.name: self._draw({**runs, name: h}),
                )
            self.results[key] = runs
        self.show_cached()
        return self.results[key]

    def show_cached(self) -> None:
        runs = self.results.get(self.key())
        if runs is None:
            self.status.value = (
                f"depth {self.depth.value}, {self.epochs.value} epochs: press <b>race</b>"
            )
            with self.out:
                self.out.clear_output()
            return
        self._draw(runs)
        finals = ", ".join(
            f"{n}: train error {100 * (1 - h.final['train_acc']):.1f}%" for n, h in runs.items()
        )
        self.status.value = (
            f"depth {self.depth.value}, {self.epochs.value} epochs (cached): {finals}"
        )

    def _draw(self, runs: dict) -> None:
        with self._figure() as ax:
            for name, h in runs.items():
                ax.plot(
                    h["epoch"],
                    h["train_loss"],
                    "--" if name.startswith("plain") else "-",
                    marker="o",
                    label=name,
                )
            ax.set(xlabel="epoch", ylabel="training loss", title="plain vs residual")
            ax.grid(alpha=0.3)
            ax.legend()


def _check_lesion_inputs(resnet, plain, loader) -> None:
    """A ValueError unless both networks list the same number of blocks and ``loader`` yields
    at least one image."""
    counts = {}
    for name, net in (("resnet", resnet), ("plain", plain)):
        if not callable(getattr(net, "blocks", None)):
            raise ValueError(f"{name} must be a CIFAR network of the book (cifar_resnet(...))")
        counts[name] = len(net.blocks())
    if counts["resnet"] != counts["plain"]:
        raise ValueError(
            f"resnet has {counts['resnet']} blocks and plain {counts['plain']}: compare two "
            "networks of one depth, e.g. cifar_resnet(20) and cifar_resnet(20, skip=False)"
        )
    first = next(iter(loader), None)
    if first is None or len(first[1]) == 0:
        raise ValueError(
            "the loader yields no images: pass the test images, e.g. "
            "CifarLoader(data.test_images, data.test_labels, 500, train=False)"
        )


class LesionExplorer(_Explorer):
    """Remove one block of a trained ResNet and of a trained plain network at test time
    (Veit et al. 2016) and compare the accuracy each keeps. ``ex.block.value = 4`` selects."""

    def __init__(self, resnet, plain, loader) -> None:
        import ipywidgets as w

        _check_lesion_inputs(resnet, plain, loader)
        self.baseline = {"resnet": evaluate(resnet, loader)[1], "plain": evaluate(plain, loader)[1]}
        self.curves = {"resnet": lesion_curve(resnet, loader), "plain": lesion_curve(plain, loader)}
        n = len(self.curves["resnet"])
        self.block = w.IntSlider(value=n // 2, min=0, max=n - 1, description="block")
        self.info = w.HTML()
        self.out = w.Output()
        self.block.observe(lambda _c: self.update(), names="value")
        self.widget = w.VBox([self.block, self.info, self.out])
        self.update()

    def current(self) -> dict[str, float | None]:
        return {k: v[self.block.value] for k, v in self.curves.items()}

    def mean_after(self) -> dict[str, float]:
        """Per network, the mean accuracy after removing one block, over the removable ones."""
        kept = {k: [a for a in v if a is not None] for k, v in self.curves.items()}
        return {k: sum(v) / len(v) for k, v in kept.items()}

    def update(self) -> None:
        cur = self.current()

        def fmt(v):
            return "cannot be removed (changes the shape)" if v is None else f"{100 * v:.1f}%"

        self.info.value = (
            f"block {self.block.value} removed: ResNet keeps {fmt(cur['resnet'])} "
            f"(intact {100 * self.baseline['resnet']:.1f}%), plain keeps {fmt(cur['plain'])} "
            f"(intact {100 * self.baseline['plain']:.1f}%)"
        )
        with self._figure() as ax:
            for kind, style in (("resnet", "-o"), ("plain", "--s")):
                ys = [float("nan") if v is None else 100 * v for v in self.curves[kind]]
                ax.plot(range(len(ys)), ys, style, ms=3, label=kind)
                ax.axhline(100 * self.baseline[kind], color="0.6", lw=0.8)
            ax.axvline(self.block.value, color="red", lw=0.8)
            ax.set(xlabel="block removed", ylabel="test accuracy (%)", ylim=(0, 100))
            ax.grid(alpha=0.3)
            ax.legend()
