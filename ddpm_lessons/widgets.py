"""Interactive explorers for the notebooks, built on ipywidgets.

* :func:`ddim_explorer` -- sliders for DDIM's η and number of steps ([DDIM] Eq. 12 and 16) that redraw samples of a
  trained model from one fixed starting noise x_T, so that moving a slider changes the sampler and nothing else.

Every explorer is an ``ipywidgets.VBox`` whose picture is an ``ipywidgets.Image`` holding a PNG drawn off-screen
with matplotlib (no pyplot state, no inline display), so it updates the same way in JupyterLab, VS Code and a test
without a kernel. Sliders use ``continuous_update=False``: one redraw when a slider is released. The attributes
``samples`` (the last samples, on the CPU) and ``n_draws`` (how many redraws happened) let tests and learners read
what is shown.

References:
    [DDPM] Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [DDIM] Song, Meng, Ermon 2020, arXiv:2010.02502
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from . import metrics, plotting, samplers
from .models import protocol
from .schedules import Schedule

__all__ = ["DDIMExplorer", "ddim_explorer"]


# ---- small private helpers (shared by the explorers in this module) --------------------------------------------



def _check_steps(sched: Schedule, steps: int, steps_options) -> list[int]:
    """The step-count slider's options as a list, after checking them and the initial ``steps`` (ValueError)."""
    options = [int(s) for s in steps_options]
    if not options or any(s < 1 or s > sched.T for s in options) or sorted(set(options)) != options:
        raise ValueError(f"steps_options must be increasing integers in 1..{sched.T}, got {list(steps_options)}")
    if steps not in options:
        raise ValueError(f"steps must be one of steps_options {options}, got {steps!r}")
    return options

def _png(fig: Figure) -> bytes:
    """Render a matplotlib Figure (not attached to pyplot) to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _model_device(model: torch.nn.Module) -> torch.device:
    return protocol.device_of(model)


def _sample_shape(model: torch.nn.Module, n: int) -> tuple[int, ...]:
    """(n, D) for a vector model (``model.dim``), (n, C, H, W) for an image model (``in_channels``, ``image_size``)."""
    if hasattr(model, "dim"):
        return (n, int(model.dim))
    if hasattr(model, "in_channels") and hasattr(model, "image_size"):
        return (n, int(model.in_channels), int(model.image_size), int(model.image_size))
    raise ValueError("model must have `dim` (vector data) or `in_channels` and `image_size` (images); "
                     "pass shape=(n, ...) explicitly")


def _draw_samples(ax, x: torch.Tensor, reference: torch.Tensor | None, lim: float | None, title: str,
                  nrow: int | None = None) -> None:
    """Scatter 2-D samples (over grey reference points) or tile images into ``ax``."""
    if x.dim() == 2:
        if reference is not None:
            plotting.scatter2d(reference, ax=ax, color=plotting.COLORS["data"], s=2, alpha=0.3, label="data")
        plotting.scatter2d(x, ax=ax, s=3, alpha=0.6, label="samples", lim=lim, title=title)
        ax.legend(loc="upper right", markerscale=4, fontsize=8)
    else:
        plotting.show_images(x, ax=ax, nrow=nrow, title=title)


def _new_figure(size: Sequence[float]) -> tuple[Figure, object]:
    fig = Figure(figsize=tuple(size), dpi=80, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


# ---- the DDIM explorer -------------------------------------------------------------------------------------------


class DDIMExplorer(widgets.VBox):
    """Sliders for η and the number of DDIM steps above a picture of the samples (see :func:`ddim_explorer`).

    Attributes:
        eta_slider: ``FloatSlider`` for η in [0, 1] (0: deterministic DDIM, 1: ancestral sampling with β̃).
        steps_slider: ``SelectionSlider`` over the allowed numbers of steps.
        image: the ``Image`` widget showing the current samples (PNG bytes in ``image.value``).
        status: a ``Label`` describing the current draw.
        samples: the samples on display, a CPU tensor of ``shape``.
        n_draws: number of redraws so far (1 after construction).
    """

    def __init__(self, model: torch.nn.Module, sched: Schedule, shape: tuple[int, ...], eta: float, steps: int,
                 steps_options: Sequence[int], cond: torch.Tensor | None, w: float, seed: int,
                 reference: torch.Tensor | None, floor: float | None, lim: float | None,
                 figsize: Sequence[float]) -> None:
        self.model, self.sched, self.shape = model, sched, shape
        self.cond, self.w, self.seed = cond, w, seed
        self.reference, self.floor, self.lim, self.figsize = reference, floor, lim, figsize
        self.samples: torch.Tensor | None = None
        self.n_draws = 0
        self.eta_slider = widgets.FloatSlider(value=eta, min=0.0, max=1.0, step=0.1, description="η",
                                              continuous_update=False, readout_format=".1f")
        self.steps_slider = widgets.SelectionSlider(options=list(steps_options), value=steps, description="steps",
                                                    continuous_update=False)
        self.image = widgets.Image(format="png")
        self.status = widgets.Label()
        self.eta_slider.observe(self._on_change, names="value")
        self.steps_slider.observe(self._on_change, names="value")
        super().__init__([widgets.HBox([self.eta_slider, self.steps_slider]), self.image, self.status])
        self.redraw()

    def _on_change(self, _change: dict) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Sample with the sliders' η and steps from the fixed x_T (seeded generator) and update the picture."""
        eta, steps = float(self.eta_slider.value), int(self.steps_slider.value)
        g = torch.Generator().manual_seed(self.seed)  # the same x_T (and the same later noise) on every redraw
        start = time.perf_counter()
        x = samplers.sample(self.model, self.sched, self.shape, method="ddim", steps=steps, eta=eta, cond=self.cond,
                            w=self.w, generator=g, progress=False)
        seconds = time.perf_counter() - start
        self.samples = x.detach().cpu()
        text = f"DDIM, η = {eta:.1f}, {steps} steps ({steps} network calls, {seconds:.2f} s)"
        if self.samples.dim() == 2 and self.reference is not None:
            sw = metrics.sliced_wasserstein(self.samples, self.reference)
            text += f"; sliced Wasserstein to data {sw:.3f}"
            if self.floor:
                text += f" = {sw / self.floor:.2f}× the floor"
        fig, ax = _new_figure(self.figsize)
        nrow = None
        if self.cond is not None and self.samples.dim() == 4:
            nrow = protocol.num_classes(self.model) or None
        _draw_samples(ax, self.samples, self.reference, self.lim, f"η = {eta:.1f}, {steps} steps", nrow=nrow)
        self.image.value = _png(fig)
        self.status.value = text
        self.n_draws += 1


def ddim_explorer(model: torch.nn.Module, sched: Schedule, n: int | None = None, shape: tuple[int, ...] | None = None,
                  eta: float = 0.0, steps: int = 20, steps_options: Sequence[int] = (5, 10, 20, 50, 100, 200),
                  cond: int | torch.Tensor | None = None, w: float = 0.0, seed: int = 0,
                  reference: torch.Tensor | None = None, floor: float | None = None, lim: float | None = None,
                  figsize: Sequence[float] = (4.2, 4.2)) -> DDIMExplorer:
    """An interactive DDIM sampler: sliders for η ∈ [0, 1] and the number of steps, redrawn from a fixed x_T.

    Args:
        model: a trained denoiser following the package protocol (``model(xt, t, cond)``), in eval mode or not.
        sched: the full schedule the model was trained with; DDIM runs on ``respace(sched, steps)`` ([DDIM] §4.2).
        n: number of samples (default 1,000 points for vector data, 40 images for image models).
        shape: sample shape (n, ...); default inferred from the model (``dim`` or ``in_channels``/``image_size``).
        eta, steps: initial slider values; ``steps`` must be one of ``steps_options`` (each in 1..sched.T).
        cond, w: class ids (an int or (n,) tensor) and guidance weight for a class-conditional model. For an image
            model with classes and no ``cond``, the samples cycle through the classes 0..num_classes-1.
        seed: seeds the generator at every redraw, so x_T and the later noise are the same for every setting.
        reference: data points (m, D) drawn in grey behind 2-D samples; the label then shows the sliced
            Wasserstein distance of the samples to them, and its ratio to ``floor`` when given.
        lim: symmetric axis limit for 2-D plots. figsize: the picture's size in inches.

    Returns:
        a :class:`DDIMExplorer` (an ``ipywidgets.VBox``); display it as the last expression of a cell. One redraw
        costs ``steps`` network calls on ``n`` samples: about a second on a CPU for the 2-D MLP at 200 steps.
    """
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a ddpm_lessons.schedules.Schedule, got {type(sched).__name__}")
    options = _check_steps(sched, steps, steps_options)
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (the slider's range), got {eta!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if shape is None:
        probe = _sample_shape(model, 1)
        n = n if n is not None else (1000 if len(probe) == 2 else 40)
        shape = (n, *probe[1:])
    elif n is not None and shape[0] != n:
        raise ValueError(f"shape[0] ({shape[0]}) and n ({n}) disagree")
    shape = tuple(int(s) for s in shape)
    num_classes = protocol.num_classes(model)
    if cond is None and num_classes > 0 and len(shape) == 4:
        cond = torch.arange(shape[0]) % num_classes  # a grid with one class per column
    if isinstance(cond, torch.Tensor):
        cond = cond.to(_model_device(model))
    if reference is not None:
        reference = reference.detach().cpu()
    return DDIMExplorer(model, sched, shape, float(eta), int(steps), options, cond, float(w), int(seed),
                        reference, floor, lim, figsize)


# ---- the classifier-free guidance explorer ---------------------------------------------------------------------

__all__ += ["GuidanceExplorer", "guidance_explorer"]

GUIDANCE_W_MAX = 10.0  # the w slider's range is [0, GUIDANCE_W_MAX]
_ALL_CLASSES = "all"


class GuidanceExplorer(widgets.VBox):
    """A guidance-weight slider, a class picker, DDIM steps and a seed above a sample grid and its metrics.

    See :func:`guidance_explorer`. Attributes:
        w_slider: ``FloatSlider`` for the [CFG] weight w in [0, 10] (ε̃ = (1 + w) ε_c - w ε_u; s = 1 + w).
        class_picker: ``Dropdown`` with "all digits" (the grid cycles through the classes) or one class.
        steps_slider: ``SelectionSlider`` over the allowed numbers of DDIM steps.
        seed_box: ``BoundedIntText``; the seed fixes x_T, so moving w changes the guidance and nothing else.
        image: the ``Image`` widget (PNG bytes in ``image.value``).
        metrics_html: an ``HTML`` line with the adherence (in ``<span class="ddpm-adherence">``), the mean
            classifier probability of the requested class (``ddpm-confidence``) and the within-class diversity
            (``ddpm-diversity``), beside the real test images' diversity.
        message: an ``HTML`` line for clamped values and errors (empty when all is well).
        samples, labels: the images on display (n, 1, H, W) on the CPU and the requested classes (n,).
        report: the last numbers as a dict (w, s, digit, steps, seed, adherence, confidence, diversity,
            diversity_real, diversity_ratio, classifier_test_accuracy, seconds, and ``curve``: the trade-off points
            as a list of dicts (w, adherence, diversity_ratio), sorted by w, the current w among them).
        curve_image: the ``Image`` widget of the trade-off curve (adherence and within-class diversity against w
            for the current class, steps and seed, the current w marked); None when ``curve_ws`` is empty.
        n_draws: redraws so far (1 after construction); n_sampled: how many of them ran the sampler (the others
            came from the cache of recent settings); n_curve_sampled: sampler runs for the curve's other w values.
    """

    def __init__(self, model: torch.nn.Module, sched: Schedule, classifier: torch.nn.Module, n: int, w: float,
                 digit: int | str, steps: int, steps_options: Sequence[int], seed: int, clip_x0: bool,
                 cache_size: int, figsize: Sequence[float], curve_ws: Sequence[float] = (),
                 curve: dict[float, dict] | None = None) -> None:
        self.model, self.sched, self.classifier = model, sched, classifier
        self.n, self.clip_x0, self.figsize, self.cache_size = n, clip_x0, figsize, cache_size
        self.num_classes = protocol.num_classes(model)
        self.device = _model_device(model)
        self.samples: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.report: dict[str, float | int | str] = {}
        self.n_draws = 0
        self.n_sampled = 0
        self.n_curve_sampled = 0
        self.curve_ws = tuple(float(v) for v in curve_ws)
        self._results: dict[tuple, tuple[torch.Tensor, dict]] = {}  # settings -> (samples, numbers), LRU order
        self._curves: dict[tuple, dict[float, dict]] = {}  # (digit, steps, seed) -> {w: numbers}, LRU order
        if curve:  # precomputed points for the starting class, steps and seed (e.g. a notebook's own sweep)
            self._curves[(digit, int(steps), int(seed))] = {
                round(float(wv), 4): dict(w=float(wv), adherence=float(r["adherence"]),
                                          diversity_ratio=float(r["diversity_ratio"])) for wv, r in curve.items()}
        self._x_T: dict[int, torch.Tensor] = {}  # seed -> starting noise
        self._real_diversity: dict[int | str, float] = {}  # class -> diversity of the real test images
        self._last_good = (float(w), digit, int(steps), int(seed))
        self._suspended = False

        self.w_slider = widgets.FloatSlider(value=w, min=0.0, max=GUIDANCE_W_MAX, step=0.1, description="w",
                                            continuous_update=False, readout_format=".1f")
        options = [("all digits", _ALL_CLASSES)] + [(str(c), c) for c in range(self.num_classes)]
        self.class_picker = widgets.Dropdown(options=options, value=digit, description="class")
        self.steps_slider = widgets.SelectionSlider(options=list(steps_options), value=steps,
                                                    description="DDIM steps", continuous_update=False)
        self.seed_box = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed")
        self.image = widgets.Image(format="png", width=int(80 * figsize[0]))  # 80 dpi: shown at its own size
        self.metrics_html = widgets.HTML()
        self.message = widgets.HTML()
        for control in (self.w_slider, self.class_picker, self.steps_slider, self.seed_box):
            control.observe(self._on_change, names="value")
        controls = widgets.VBox([widgets.HBox([self.w_slider, self.class_picker]),
                                 widgets.HBox([self.steps_slider, self.seed_box])])
        self.curve_image = widgets.Image(format="png", width=int(80 * 3.6)) if self.curve_ws else None
        pictures = widgets.HBox([self.image, self.curve_image]) if self.curve_image is not None else self.image
        super().__init__([controls, pictures, self.metrics_html, self.message])
        self.redraw()

    # ---- programmatic use ------------------------------------------------------------------------------------
    def set(self, w: float | None = None, digit: int | str | None = None, steps: int | None = None,
            seed: int | None = None) -> GuidanceExplorer:
        """Change several controls at once with a single redraw (as moving them by hand would, one by one)."""
        self._suspended = True
        try:
            if w is not None:
                self.w_slider.value = w
            if digit is not None:
                self.class_picker.value = digit
            if steps is not None:
                self.steps_slider.value = steps
            if seed is not None:
                self.seed_box.value = seed
        finally:
            self._suspended = False
        self.redraw()
        return self

    def _on_change(self, _change: dict) -> None:
        if not self._suspended:
            self.redraw()

    # ---- cached pieces ---------------------------------------------------------------------------------------
    def _starting_noise(self, seed: int) -> torch.Tensor:
        if seed not in self._x_T:
            g = torch.Generator().manual_seed(seed)
            self._x_T[seed] = torch.randn((self.n, *self._image_shape()), generator=g)  # (n, C, H, W)
        return self._x_T[seed]

    def _image_shape(self) -> tuple[int, ...]:
        return _sample_shape(self.model, 1)[1:]

    def _labels(self, digit: int | str) -> torch.Tensor:
        if digit == _ALL_CLASSES:
            return torch.arange(self.n) % self.num_classes  # one class per grid column
        return torch.full((self.n,), int(digit), dtype=torch.long)

    def _diversity_real(self, digit: int | str) -> float:
        if digit not in self._real_diversity:
            from .data import digits

            x, y = digits("test")
            if digit != _ALL_CLASSES:
                x, y = x[y == int(digit)], y[y == int(digit)]
            self._real_diversity[digit] = metrics.within_class_diversity(x, y)
        return self._real_diversity[digit]

    # ---- validation ------------------------------------------------------------------------------------------
    def _settings(self) -> tuple[float, int | str, int, int, list[str]]:
        """The controls' values, repaired where they are unusable, with a note for each repair."""
        import math

        notes: list[str] = []
        w_raw = self.w_slider.value
        try:
            w = float(w_raw)
        except (TypeError, ValueError):
            w = float("nan")
        if not math.isfinite(w):
            w = self._last_good[0]
            notes.append(f"w = {w_raw!r} is not a number; kept w = {w:.1f}")
        elif not 0.0 <= w <= GUIDANCE_W_MAX:
            clamped = min(max(w, 0.0), GUIDANCE_W_MAX)
            notes.append(f"w = {w:g} is outside [0, {GUIDANCE_W_MAX:g}]; using w = {clamped:.1f}")
            w = clamped
        digit = self.class_picker.value
        if digit != _ALL_CLASSES and not (isinstance(digit, int) and 0 <= digit < self.num_classes):
            notes.append(f"class {digit!r} is not one of 0..{self.num_classes - 1}; showing all digits")
            digit = _ALL_CLASSES
        steps = int(self.steps_slider.value)
        seed = self.seed_box.value
        if not (isinstance(seed, int) and 0 <= seed < 2**31):
            notes.append(f"seed must be an integer in 0..2**31-1, got {seed!r}; kept {self._last_good[3]}")
            seed = self._last_good[3]
        return w, digit, steps, int(seed), notes

    # ---- drawing ---------------------------------------------------------------------------------------------
    def _compute(self, w: float, digit: int | str, steps: int, seed: int, for_curve: bool = False
                 ) -> tuple[torch.Tensor, dict]:
        key = (round(w, 4), digit, steps, seed)
        if key in self._results:
            self._results[key] = self._results.pop(key)  # most recently used goes last
            return self._results[key]
        labels = self._labels(digit)
        start = time.perf_counter()
        x = samplers.sample(self.model, self.sched, (self.n, *self._image_shape()), method="ddim", steps=steps,
                            cond=labels.to(self.device), w=w, x_T=self._starting_noise(seed), progress=False,
                            clip_x0=self.clip_x0)
        x = x.detach().cpu().clamp(-1, 1)  # images live in [-1, 1]
        with torch.no_grad():
            probs = torch.softmax(self.classifier.logits(x).cpu(), dim=1)  # (n, num_classes)
        hit = probs.argmax(1) == labels
        diversity = metrics.within_class_diversity(x, labels)
        real = self._diversity_real(digit)
        numbers = dict(w=w, s=1.0 + w, digit=digit, steps=steps, seed=seed, adherence=float(hit.double().mean()),
                       hits=int(hit.sum()), confidence=float(probs[torch.arange(self.n), labels].double().mean()),
                       diversity=diversity, diversity_real=real, diversity_ratio=diversity / real,
                       classifier_test_accuracy=float(getattr(self.classifier, "test_accuracy", float("nan"))),
                       seconds=time.perf_counter() - start)
        if for_curve:  # a curve point: its numbers are kept (in _curves), its samples are not
            self.n_curve_sampled += 1
            return x, numbers
        self.n_sampled += 1
        self._results[key] = (x, numbers)
        while len(self._results) > self.cache_size:
            self._results.pop(next(iter(self._results)))
        return x, numbers

    def _curve(self, current: dict) -> list[dict]:
        """Adherence and diversity ratio at ``curve_ws`` and the current w, for the current class, steps and seed.

        Each point is one sampling run with the same x_T (cached per setting); the current point is ``current``.
        """
        ckey = (current["digit"], current["steps"], current["seed"])
        pts = self._curves.pop(ckey, {})
        self._curves[ckey] = pts  # most recently used goes last
        pts[round(current["w"], 4)] = current
        for wv in self.curve_ws:
            if round(wv, 4) not in pts:
                pts[round(wv, 4)] = self._compute(wv, current["digit"], current["steps"], current["seed"],
                                                  for_curve=True)[1]
        while len(self._curves) > 16:
            self._curves.pop(next(iter(self._curves)))
        return [dict(w=r["w"], adherence=r["adherence"], diversity_ratio=r["diversity_ratio"])
                for _, r in sorted(pts.items())]

    def _draw_curve(self, curve: list[dict], w: float) -> bytes:
        """The trade-off picture: adherence (%) and diversity / real diversity against w, the current w marked."""
        fig = Figure(figsize=(3.6, 2.6), dpi=80, layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        ws = [p["w"] for p in curve]
        ax.plot(ws, [100 * p["adherence"] for p in curve], "o-", color="#2e86ab", label="adherence (%)")
        ax.set_xlabel("guidance weight w")
        ax.set_ylabel("adherence (%)", color="#2e86ab")
        ax.set_ylim(0, 105)
        ax2 = ax.twinx()
        ax2.plot(ws, [p["diversity_ratio"] for p in curve], "s--", color="#d1495b", label="diversity / real")
        ax2.set_ylabel("diversity / real", color="#d1495b")
        ax2.set_ylim(0, max(1.2, 1.1 * max(p["diversity_ratio"] for p in curve)))
        ax.axvline(w, color="0.3", lw=1, ls=":")
        cur = next(p for p in curve if round(p["w"], 4) == round(w, 4))
        ax.plot([w], [100 * cur["adherence"]], "o", ms=9, mfc="none", mec="k")
        ax2.plot([w], [cur["diversity_ratio"]], "s", ms=9, mfc="none", mec="k")
        ax.set_title(f"trade-off, current w = {w:.1f}", fontsize=9)
        return _png(fig)

    def redraw(self) -> None:
        """Sample (or fetch from the cache) for the current controls and update the picture and the numbers.

        Never raises: unusable values are repaired with a note in ``message``; an error keeps the last picture
        and is shown in ``message``.
        """
        import html

        w, digit, steps, seed, notes = self._settings()
        try:
            x, r = self._compute(w, digit, steps, seed)
            curve = self._curve(r) if self.curve_ws else []
        except Exception as err:  # noqa: BLE001 -- a widget callback must not take the kernel's cell down
            self.message.value = f"<span style='color:#d1495b'>could not draw: {html.escape(str(err))}</span>"
            return
        self._last_good = (w, digit, steps, seed)
        if notes:  # show the repaired values in the controls too (no second redraw)
            self._suspended = True
            try:
                self.w_slider.value, self.class_picker.value, self.seed_box.value = w, digit, seed
            finally:
                self._suspended = False
        self.samples, self.labels, self.report = x, self._labels(digit), {**r, "curve": curve}
        if self.curve_image is not None:
            self.curve_image.value = self._draw_curve(curve, w)
        what = "all digits" if digit == _ALL_CLASSES else f"digit {digit}"
        fig, ax = _new_figure(self.figsize)
        plotting.show_images(x, ax=ax, nrow=self.num_classes, title=f"w = {w:.1f} (s = {1 + w:.1f}), {what}")
        self.image.value = _png(fig)
        self.metrics_html.value = (
            f"w = {w:.1f} (s = 1 + w = {1 + w:.1f}) · {what} · {steps} DDIM steps · seed {seed}<br>"
            f"adherence <b><span class='ddpm-adherence'>{100 * r['adherence']:.1f}%</span></b> "
            f"({r['hits']}/{self.n} classified as requested; mean p(c | x) "
            f"<span class='ddpm-confidence'>{r['confidence']:.3f}</span>) · within-class diversity "
            f"<b><span class='ddpm-diversity'>{r['diversity']:.2f}</span></b> "
            f"= {r['diversity_ratio']:.2f}× the real test images' ({r['diversity_real']:.2f}) · "
            f"classifier test accuracy {100 * r['classifier_test_accuracy']:.1f}% · {r['seconds']:.2f} s")
        self.message.value = ("<span style='color:#d1495b'>" + html.escape("; ".join(notes)) + "</span>"
                              if notes else "")
        self.n_draws += 1


def guidance_explorer(model: torch.nn.Module, sched: Schedule | None = None, classifier: torch.nn.Module | None = None,
                      n: int = 40, w: float = 0.0, digit: int | str = "all", steps: int = 10,
                      steps_options: Sequence[int] = (5, 10, 20, 50), seed: int = 0, clip_x0: bool = True,
                      cache_size: int = 64, figsize: Sequence[float] = (5.6, 2.6),
                      curve_ws: Sequence[float] | None = (0.0, 1.0, 2.0, 4.0, 8.0),
                      curve: dict[float, dict] | None = None) -> GuidanceExplorer:
    """An interactive classifier-free guidance sampler for a class-conditional digits model ([CFG] Eq. 6).

    Controls: the guidance weight w ∈ [0, 10] (ε̃ = (1 + w) ε_c - w ε_u; the diffusers scale is s = 1 + w), the class
    ("all digits" cycles through 0..9, one per grid column), the number of DDIM steps ([DDIM] Eq. 12, η = 0) and the
    seed of x_T. Each change redraws the grid and prints the class adherence (share of samples the digits classifier
    reads as the requested class, and its mean probability for that class) and the within-class diversity (mean
    pairwise distance) beside the real test images'.

    Args:
        model: a class-conditional model with a learned null label (``model.num_classes > 0``), e.g.
            ``train.pretrained("digits_cfg").ema_model``; a ``TrainResult`` is accepted too (its EMA model and
            schedule are used).
        sched: the full schedule the model was trained with. Default: the result's ``sched`` (or the model's own
            ``sched`` attribute, as the exact mixture models have); a bare model without one raises ValueError,
            because a guessed schedule samples a different chain than the one trained (``digits_cfg`` is cosine).
        classifier: the digits classifier; default ``metrics.digit_classifier()`` (trained once, cached on disk).
        n: samples per draw, 2·num_classes..200 (40 keeps a redraw near half a second on a laptop CPU at 10 steps).
        w, digit, steps, seed: initial control values; ``steps`` must be one of ``steps_options`` (each in 1..T).
        clip_x0: clip the predicted x_0 to [-1, 1] at every DDIM step (large w pushes pixels out of range).
        cache_size: how many recent settings keep their samples (moving back to one redraws instantly).
        figsize: the picture's size in inches.
        curve_ws: the w values of the trade-off curve (adherence and within-class diversity against w, drawn beside
            the samples with the current w marked); each new class/steps/seed costs one sampling run per value.
            None or () draws no curve.
        curve: precomputed points ``{w: {"adherence": ..., "diversity_ratio": ...}}`` (e.g. ``metrics.digit_report``
            dicts) for the starting class, steps and seed: construction then samples only the current w. Their w
            values replace ``curve_ws`` (when that is left at its default). The current point is always the
            explorer's own draw (n samples), so it can sit off a curve measured with more samples.

    Returns:
        a :class:`GuidanceExplorer` (an ``ipywidgets.VBox``): display it as the last expression of a cell, or drive
        it from code with ``explorer.set(w=3, digit=5)`` and read ``explorer.report``.
    """
    import math

    if sched is None and hasattr(model, "ema_model") and hasattr(model, "sched"):
        model, sched = model.ema_model, model.sched
    elif hasattr(model, "ema_model"):
        model = model.ema_model
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module or a TrainResult, got {type(model).__name__}")
    if protocol.num_classes(model) <= 0 or protocol.null_label(model) is None:
        raise ValueError("model must be class-conditional with a null label (model.num_classes > 0) for guidance")
    if sched is None and isinstance(getattr(model, "sched", None), Schedule):
        sched = model.sched
    if sched is None:  # errata 29: never guess (a linear guess sampled digits_cfg, trained on cosine, wrongly)
        raise ValueError("guidance_explorer needs the schedule the model was trained with: pass sched=..., or the "
                         "TrainResult itself (e.g. guidance_explorer(train.pretrained('digits_cfg')))")
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a ddpm_lessons.schedules.Schedule, got {type(sched).__name__}")
    shape = _sample_shape(model, 1)
    if classifier is None:
        if tuple(shape[1:]) != (1, 8, 8):
            raise ValueError(f"the default classifier reads 8x8 digits, but the model draws {tuple(shape[1:])}; "
                             "pass classifier=")
        classifier = metrics.digit_classifier()
    if not hasattr(classifier, "logits"):
        raise ValueError("classifier must have a logits(x) method (like metrics.DigitClassifier)")
    num_classes = int(model.num_classes)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 * num_classes <= n <= 200:
        raise ValueError(f"n must be an integer in {2 * num_classes}..200 (two samples per class at least, for the "
                         f"within-class diversity), got {n!r}")
    if not (isinstance(w, int | float) and math.isfinite(w) and 0 <= w <= GUIDANCE_W_MAX):
        raise ValueError(f"w must lie in [0, {GUIDANCE_W_MAX:g}] (the slider's range), got {w!r}")
    if digit != _ALL_CLASSES and not (isinstance(digit, int) and 0 <= digit < num_classes):
        raise ValueError(f"digit must be 'all' or an integer in 0..{num_classes - 1}, got {digit!r}")
    options = _check_steps(sched, steps, steps_options)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in 0..2**31-1, got {seed!r}")
    if not isinstance(cache_size, int) or cache_size < 1:
        raise ValueError(f"cache_size must be an integer >= 1, got {cache_size!r}")
    if curve is not None:
        if not isinstance(curve, dict) or not all(
                isinstance(r, dict) and "adherence" in r and "diversity_ratio" in r for r in curve.values()):
            raise ValueError("curve must be a dict {w: {'adherence': ..., 'diversity_ratio': ...}}")
        if curve_ws == (0.0, 1.0, 2.0, 4.0, 8.0):
            curve_ws = sorted(float(v) for v in curve)
    curve_ws = tuple(curve_ws or ())
    if not all(isinstance(v, int | float) and 0 <= v <= GUIDANCE_W_MAX for v in curve_ws):
        raise ValueError(f"curve_ws must be numbers in [0, {GUIDANCE_W_MAX:g}], got {curve_ws!r}")
    return GuidanceExplorer(model, sched, classifier, n, float(w), digit, int(steps), options, int(seed),
                            bool(clip_x0), cache_size, figsize, curve_ws, curve)
