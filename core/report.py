"""The clinical report of a set of predictions: overall metrics with an explicit positive class, the confusion
matrix, and per-word, per-age-band and per-speaker scores with bootstrap 95 % confidence intervals.

The intervals resample speakers (clips of one child are not independent), seeded, so the same predictions give the
same report. The bootstrap is written here because neither sklearn nor scipy resamples clusters; it is vectorised
over per-unit counts, so a thousand draws cost milliseconds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from core.config import Config
from core.data.dataset import AudioData
from core.metrics import classification_metrics, recall_average, regression_metrics
from core.statistics import positive_class

BOOTSTRAP = 1000  # draws per interval
LEVEL = 0.95
ONE_CLASS = "one class"  # the flag of a group whose clips are all of one class: no UAR


def age_bands(ages: np.ndarray, edges: list[float]) -> np.ndarray:
    """Band label of each age: `[a, b)` between consecutive `edges`, yearly (`[4, 5)` ...) when `edges` is empty;
    'unknown' for a missing age, '<a' and '>=b' outside the edges."""
    labels = np.full(len(ages), "unknown", dtype=object)
    known = np.isfinite(ages)
    if not known.any():
        return labels
    if not edges:
        years = np.floor(ages[known]).astype(int)
        labels[known] = [f"[{y}, {y + 1})" for y in years]
        return labels
    bounds = np.asarray(sorted(edges), dtype=np.float64)
    index = np.searchsorted(bounds, ages[known], side="right")
    names = [f"<{bounds[0]:g}"] + [f"[{a:g}, {b:g})" for a, b in zip(bounds[:-1], bounds[1:], strict=True)] \
        + [f">={bounds[-1]:g}"]
    labels[known] = [names[i] for i in index]
    return labels


def _interval(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if len(finite) < 2:
        return math.nan, math.nan
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def _units(rows_units: np.ndarray | None, n: int) -> np.ndarray:
    """Resampling units: speakers when there are several, else clips (a single speaker's own interval)."""
    if rows_units is None or len(np.unique(rows_units)) < 2:
        return np.arange(n)
    return np.unique(rows_units, return_inverse=True)[1]


def bootstrap_uar(targets: np.ndarray, predictions: np.ndarray, units: np.ndarray | None, classes: int,
                  rng: np.random.Generator) -> tuple[float, float, int]:
    """(95 % interval of UAR when whole units are resampled, draws dropped). UAR averages the recall of every class
    the rows hold: a draw that loses one of them has no UAR (averaging the classes left would score a different
    quantity), so it is dropped and counted."""
    unit = _units(units, len(targets))
    count = int(unit.max()) + 1
    total = np.zeros((count, classes))
    correct = np.zeros((count, classes))
    np.add.at(total, (unit, targets), 1)
    np.add.at(correct, (unit, targets), predictions == targets)
    weights = rng.multinomial(count, np.full(count, 1 / count), size=BOOTSTRAP)  # [draws, units]
    present = np.unique(targets)
    seen, hit = (weights @ total)[:, present], (weights @ correct)[:, present]
    kept = (seen > 0).all(axis=1)
    uar = (hit[kept] / seen[kept]).mean(axis=1)
    return (*_interval(uar), int((~kept).sum()))


def per_group_uar(targets: np.ndarray, predictions: np.ndarray, groups: np.ndarray, units: np.ndarray | None,
                  classes: int, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """{group: uar, 95 % interval, clips, speakers, clips per class, bootstrap draws dropped} for each group; a group
    that lacks a class of the rows has UAR NaN and `flag` "one class" (its clips' recall would read as a UAR)."""
    table = {}
    present = len(np.unique(targets))
    for group in sorted(np.unique(groups).tolist(), key=str):
        mask = groups == group
        own_units = units[mask] if units is not None else None
        entry: dict[str, Any] = {"uar": math.nan, "ci_low": math.nan, "ci_high": math.nan, "clips": int(mask.sum()),
                                 "speakers": int(len(np.unique(own_units))) if own_units is not None else None,
                                 "per_class": np.bincount(targets[mask], minlength=classes).tolist()}
        if len(np.unique(targets[mask])) < present:  # one class's recall is not a UAR: none, and flagged
            entry["flag"] = ONE_CLASS
        else:
            low, high, dropped = bootstrap_uar(targets[mask], predictions[mask], own_units, classes, rng)
            entry.update(uar=recall_average(targets[mask], predictions[mask]), ci_low=low, ci_high=high,
                         bootstrap_dropped=dropped)
        table[str(group)] = entry
    return table


RATES = ("sensitivity", "specificity", "ppv", "npv", "uar")  # the operating point's rates, in report order


def _rates(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and UAR from confusion counts (arrays: one value per draw)."""
    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, a + b, out=np.full(np.shape(a), np.nan), where=(a + b) > 0)
    sensitivity, specificity = ratio(tp, fn), ratio(tn, fp)
    return {"sensitivity": sensitivity, "specificity": specificity, "ppv": ratio(tp, fp), "npv": ratio(tn, fn),
            "uar": (sensitivity + specificity) / 2}


def operating_point_report(is_positive: np.ndarray, positive_probability: np.ndarray, threshold: float,
                           units: np.ndarray | None, rng: np.random.Generator) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV and UAR of the decision `p >= threshold`, each with its 95 % interval
    when whole speakers are resampled (the draws of `bootstrap_uar`, over per-speaker confusion counts)."""
    said = positive_probability >= threshold
    cells = np.stack([is_positive & said, is_positive & ~said, ~is_positive & said, ~is_positive & ~said], axis=1)
    unit = _units(units, len(is_positive))
    count = int(unit.max()) + 1 if len(unit) else 0
    per_unit = np.zeros((count, 4))
    np.add.at(per_unit, unit, cells.astype(float))
    point = {name: float(value) for name, value in _rates(*per_unit.sum(axis=0)).items()}
    weights = rng.multinomial(count, np.full(count, 1 / count), size=BOOTSTRAP)
    draws = _rates(*(weights @ per_unit).T)
    block: dict[str, Any] = {"threshold": float(threshold)}
    for name in RATES:
        block[name] = point[name]
        block[f"{name}_ci"] = list(_interval(draws[name]))
    tp, fn, fp, tn = (int(v) for v in per_unit.sum(axis=0))
    block["counts"] = {"true_positive": tp, "false_negative": fn, "false_positive": fp, "true_negative": tn}
    return block


def classification_report(targets: np.ndarray, probabilities: np.ndarray, classes: list[str], positive: int,
                          groups: dict[str, np.ndarray], speakers: np.ndarray | None, seed: int,
                          threshold: float | None = None) -> dict[str, Any]:
    """Metrics, sensitivity/specificity of the positive class, confusion matrix (rows: true, columns: predicted)
    and `per_<group>` UAR tables with speaker-bootstrap intervals; with a `threshold` on the positive probability
    (two classes), also `operating_point`: the rates of that decision with their intervals."""
    rng = np.random.default_rng(seed)
    predictions = probabilities.argmax(axis=1)
    metrics = classification_metrics(targets, probabilities)
    if len(classes) == 2:  # AUROC of the positive class's probability, whichever id it has
        metrics["auroc"] = classification_metrics((targets == positive).astype(int),
                                                  np.stack([1 - probabilities[:, positive],
                                                            probabilities[:, positive]], axis=1))["auroc"]
    is_positive, said_positive = targets == positive, predictions == positive
    metrics["sensitivity"] = float(said_positive[is_positive].mean()) if is_positive.any() else math.nan
    metrics["specificity"] = float((~said_positive)[~is_positive].mean()) if (~is_positive).any() else math.nan
    low, high, dropped = bootstrap_uar(targets, predictions, speakers, len(classes), rng)
    report: dict[str, Any] = {
        "metrics": metrics, "uar_ci": [low, high], "classes": list(classes), "positive_class": classes[positive],
        "confusion_matrix": confusion_matrix(targets, predictions, labels=range(len(classes))).tolist(),
        "clips": int(len(targets)), "bootstrap": {"draws": BOOTSTRAP, "level": LEVEL, "seed": seed,
                                                  "unit": "speaker" if speakers is not None else "clip",
                                                  "dropped": dropped}}  # draws that lost a class
    for name, labels in groups.items():
        report[f"per_{name}"] = per_group_uar(targets, predictions, labels, speakers, len(classes), rng)
    if threshold is not None and len(classes) == 2:  # its own seeded stream: the tables above stay as they were
        report["operating_point"] = operating_point_report(is_positive, probabilities[:, positive], threshold,
                                                           speakers, np.random.default_rng(seed))
    return report


def regression_report(targets: np.ndarray, predictions: np.ndarray, groups: dict[str, np.ndarray]
                      ) -> dict[str, Any]:
    """MAE, RMSE and Pearson r overall and within each group."""
    report: dict[str, Any] = {"metrics": regression_metrics(targets, predictions), "clips": int(len(targets))}
    for name, labels in groups.items():
        report[f"per_{name}"] = {str(g): {**regression_metrics(targets[labels == g], predictions[labels == g]),
                                          "clips": int(np.sum(labels == g))}
                                 for g in sorted(np.unique(labels).tolist(), key=str)}
    return report


def report_of_rows(config: Config, data: AudioData, rows: np.ndarray, outputs: np.ndarray,
                   threshold: float | None = None) -> dict[str, Any]:
    """The report of `outputs` (probabilities, or values [n, 1]) on `rows` of `data`, grouped by word, age band
    (`data.age_bands`) and speaker where the manifest has those columns; `threshold`: the operating point's
    (see `classification_report`)."""
    groups: dict[str, np.ndarray] = {}
    columns = data.manifest.table.columns
    if "word" in columns:
        groups["word"] = np.asarray(data.words, dtype=object)[data.word_ids[rows]]
    if "age" in columns:
        groups["age_band"] = age_bands(data.ages[rows], [float(edge) for edge in config.data.age_bands])
    speakers = data.speakers[rows] if data.speakers is not None else None
    if speakers is not None:
        groups["speaker"] = speakers
    if data.regression:
        return regression_report(data.targets[rows], outputs[:, 0], groups)
    return classification_report(data.targets[rows], outputs, data.classes,
                                 positive_class(data.classes, config.data.positive_class), groups, speakers,
                                 config.train.seed, threshold)
