"""Figures of a final model's test report, as PNG bytes: the confusion matrix, the ROC curve of the positive class,
and per-word / per-age-band UAR with the report's speaker-bootstrap 95 % intervals (core/report.py computes them;
they are drawn here, not recomputed). A regressor gets predicted-vs-true and per-group MAE instead.

Figures are made with `matplotlib.figure.Figure` (no pyplot): no display, no global figure state, headless.
Labels are the data's own words and classes, in any script: inside `any_script()` each glyph the default font lacks
(DejaVu Sans has no Hangul, kana or CJK ideographs) comes from a CJK font, through matplotlib's per-glyph font
fallback over the `font.family` list. The font ships with the project (the PyPI package `noto-cjk-sans-jp-regular`,
Noto Sans CJK, which covers Korean, Japanese and Chinese); a system's own CJK fonts are used when it is absent.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import font_manager, rc_context, rcParams
from matplotlib.figure import Figure

DPI = 100
PLOTS = "plots"  # the figures' folder in a run folder and in a model folder


# Python packages that ship a CJK font file as FONT_PATH (a dependency of the project), then the families a system
# may have installed (Debian's fonts-noto-cjk, fonts-nanum, fonts-wqy-zenhei).
CJK_FONT_PACKAGES = ("noto_cjk_sans_jp_regular",)
CJK_SYSTEM_FAMILIES = ("Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK SC", "Source Han Sans", "NanumGothic",
                       "WenQuanYi Zen Hei")


@functools.cache
def fallback_families() -> tuple[str, ...]:
    """Font families with CJK coverage, registered with matplotlib once per process: the packaged font first."""
    families: list[str] = []
    for package in CJK_FONT_PACKAGES:
        try:
            path = str(importlib.import_module(package).FONT_PATH)
        except (ImportError, AttributeError):
            continue
        font_manager.fontManager.addfont(path)
        families.append(font_manager.FontProperties(fname=path).get_name())
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    families += [name for name in CJK_SYSTEM_FAMILIES if name in known and name not in families]
    return tuple(families)


@contextlib.contextmanager
def any_script() -> Iterator[None]:
    """Text created inside falls back glyph by glyph from the usual font to the CJK fonts (a Text keeps the family
    list it was created with, so the figure is built, not only saved, inside)."""
    families = [family for family in rcParams["font.family"] if family not in fallback_families()]
    with rc_context({"font.family": [*families, *fallback_families()]}):
        yield


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG (Agg, whatever the session's backend)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def confusion_figure(matrix: list[list[int]], classes: list[str]) -> Figure:
    from sklearn.metrics import ConfusionMatrixDisplay

    figure = Figure(figsize=(1.6 + 1.1 * len(classes), 1.2 + 1.0 * len(classes)))
    axes = figure.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes).plot(ax=axes, colorbar=False,
                                                                            cmap="Blues", values_format="d")
    axes.set_title("test set: confusion matrix (rows: true)")
    return figure


def roc_figure(is_positive: np.ndarray, positive_probability: np.ndarray, positive: str,
               point: dict[str, Any] | None = None) -> Figure:
    """The ROC curve; `point`: the report's operating point, marked where its threshold puts it."""
    from sklearn.metrics import RocCurveDisplay

    figure = Figure(figsize=(4.5, 4.2))
    axes = figure.subplots()
    RocCurveDisplay.from_predictions(is_positive, positive_probability, ax=axes, name=f"positive: {positive}",
                                     plot_chance_level=True)
    if point is not None:
        axes.plot([1 - point["specificity"]], [point["sensitivity"]], marker="o", color="tab:red", linestyle="none",
                  label=f"operating point: p >= {point['threshold']:.3f}")
        axes.legend(loc="lower right", fontsize=7)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel(f"true positive rate (sensitivity to {positive})")
    axes.set_title("test set: ROC curve")
    return figure


def reliability_figure(is_event: np.ndarray, curves: dict[str, np.ndarray], what: str) -> Figure:
    """Reliability diagram (sklearn's `calibration_curve`, 10 equal-width bins): observed frequency against mean
    predicted probability, one line per set of probabilities in `curves` (e.g. before and after calibration)."""
    from sklearn.calibration import calibration_curve

    figure = Figure(figsize=(4.5, 4.2))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfectly calibrated")
    for (name, probability), marker in zip(curves.items(), "os^", strict=False):
        observed, predicted = calibration_curve(is_event, probability, n_bins=10, strategy="uniform")
        axes.plot(predicted, observed, marker=marker, label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel(f"mean predicted probability ({what})")
    axes.set_ylabel("observed frequency")
    axes.set_title("test set: reliability diagram")
    axes.legend(loc="upper left", fontsize=7)
    return figure


def group_figure(table: dict[str, dict[str, Any]], group: str, value: str, overall: float | None) -> Figure:
    """One horizontal bar per group (`value` of each entry), with its 95 % interval when the entry has one, and
    the clip count beside it; `overall` as a dashed line."""
    names = list(table)
    values = np.array([_number(table[name].get(value)) for name in names])
    low = np.array([_number(table[name].get("ci_low")) for name in names])
    high = np.array([_number(table[name].get("ci_high")) for name in names])
    figure = Figure(figsize=(6.0, 1.2 + 0.32 * len(names)))
    axes = figure.subplots()
    positions = np.arange(len(names))
    axes.barh(positions, np.nan_to_num(values), color="tab:blue", alpha=0.7)
    has_interval = np.isfinite(low) & np.isfinite(high) & np.isfinite(values)
    if has_interval.any():
        errors = np.stack([values - low, high - values])[:, has_interval]
        axes.errorbar(values[has_interval], positions[has_interval], xerr=np.clip(errors, 0, None), fmt="none",
                      ecolor="black", capsize=3, label="95 % interval (speaker bootstrap)")
    for position, name in zip(positions, names, strict=True):
        flag = table[name].get("flag")  # e.g. one class: no value to draw, said instead of a bar at 0
        note = f"  {value} undefined: {flag}" if flag else ""
        axes.annotate(f" {table[name].get('clips', '')} clips{note}", (0, position), va="center", fontsize=7)
    if overall is not None and math.isfinite(overall):
        axes.axvline(overall, color="tab:red", linestyle="--", label=f"all clips {overall:.3f}")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel(value)
    if value == "uar":
        axes.set_xlim(0, 1)
    axes.set_title(f"test set: {value} per {group.replace('_', ' ')}")
    axes.legend(loc="lower right", fontsize=7)
    return figure


def scatter_figure(targets: np.ndarray, predictions: np.ndarray, target: str) -> Figure:
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.subplots()
    axes.scatter(targets, predictions, s=12, alpha=0.6)
    low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
    axes.plot([low, high], [low, high], color="gray", linestyle="--", label="predicted = true")
    axes.set_xlabel(f"true {target}")
    axes.set_ylabel(f"predicted {target}")
    axes.set_title("test set: predicted vs true")
    axes.legend(loc="upper left", fontsize=7)
    return figure


def layer_weights_figure(weights: list[float]) -> Figure:
    """The learned softmax weights over the encoder layers (model.layers=weighted); the uniform start dashed."""
    figure = Figure(figsize=(1.5 + 0.45 * len(weights), 3.2))
    axes = figure.subplots()
    axes.bar(np.arange(len(weights)), weights, color="tab:blue", alpha=0.8)
    axes.axhline(1 / len(weights), color="gray", linestyle="--", label="uniform (the start)")
    axes.set_xticks(np.arange(len(weights)), ["emb", *map(str, range(1, len(weights)))])
    axes.set_xlabel("encoder layer (emb: the input to layer 1)")
    axes.set_ylabel("weight")
    axes.set_title("learned layer weights")
    axes.legend(loc="upper left", fontsize=7)
    return figure


def final_plots(report: dict[str, Any], targets: np.ndarray, outputs: np.ndarray, target: str = "label",
                raw: np.ndarray | None = None) -> dict[str, bytes]:
    """{file name: PNG} for a test report (core/report.py) and the predictions it was computed from: `targets`
    (class ids in the report's class order, or values) and `outputs` (probabilities [n, classes], or values
    [n, 1]); `raw`: the probabilities before calibration, for the reliability diagram."""
    with any_script():
        return _final_plots(report, targets, outputs, target, raw)


def _final_plots(report: dict[str, Any], targets: np.ndarray, outputs: np.ndarray, target: str,
                 raw: np.ndarray | None) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    if "classes" in report:  # a classifier
        classes = report["classes"]
        plots["confusion_matrix.png"] = png_bytes(confusion_figure(report["confusion_matrix"], classes))
        positive = classes.index(report["positive_class"])
        is_positive = targets == positive
        if is_positive.any() and (~is_positive).any():  # a curve needs both classes in the test set
            plots["roc_curve.png"] = png_bytes(roc_figure(is_positive, outputs[:, positive], classes[positive],
                                                          report.get("operating_point")))
        if "calibration" in report and raw is not None and len(targets):
            curves = {"after calibration": outputs, "before calibration": raw}
            if len(classes) == 2:  # the positive class's probability: the one a threshold reads
                event, what = is_positive, f"{classes[positive]}"
                curves = {name: values[:, positive] for name, values in curves.items()}
            else:  # the top label's confidence against whether it was right
                event, what = outputs.argmax(axis=1) == targets, "top class"
                curves = {name: values.max(axis=1) for name, values in curves.items()}
            plots["reliability_diagram.png"] = png_bytes(reliability_figure(event, curves, what))
        value = "uar"
    else:
        plots["predicted_vs_true.png"] = png_bytes(scatter_figure(targets, outputs[:, 0], target))
        value = "mae"
    if report.get("layer_weights"):
        plots["layer_weights.png"] = png_bytes(layer_weights_figure(report["layer_weights"]))
    overall = report["metrics"].get(value)
    for group in ("word", "age_band"):
        if report.get(f"per_{group}"):
            plots[f"{value}_per_{group}.png"] = png_bytes(group_figure(report[f"per_{group}"], group, value,
                                                                       overall))
    return plots


def write_final_plots(folder: Path, report: dict[str, Any], targets: np.ndarray, outputs: np.ndarray,
                      target: str = "label", raw: np.ndarray | None = None) -> list[Path]:
    """`final_plots` written into `folder` (tune.final: plots/ of the model folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in final_plots(report, targets, outputs, target, raw).items():
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan
