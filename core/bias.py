"""Bias metrics of one set of validation predictions: UAR within each age band and its spread, and UAR per speaker.

A screening model that works for seven-year-olds but not for three-year-olds (or for most children but not for a
tenth of them) can still have a good overall UAR. These numbers make that visible per fold and epoch, and can be
searched on (`uar_age_gap`, `uar_speaker_p10` are registered metrics in core/metrics.py).

Age bands come from the manifest's `age` column (years) and `data.age_bands` (edges; empty: whole years), the same
bands as the final report (core/report.py). A band is scored only when it holds at least `MIN_CLIPS_PER_CLASS`
clips of every class present in the rows (`data.bias_min_clips`, default 5): with fewer, its UAR is mostly noise
(one clip of a class moves it by 1/n); the bands left out are counted (`uar_age_bands_left_out`). A speaker is scored
over the classes its clips have (core/metrics.py `recall_average`, as in the report) when it has at least
`data.bias_min_clips` clips.
"""

from __future__ import annotations

import math

import numpy as np

from core.metrics import recall_average
from core.report import age_bands

SPEAKER_QUANTILE = 10  # uar_speaker_p10: the UAR that the worst tenth of the speakers are at or below


def band_key(label: str) -> str:
    """Result key of a band label: `[3, 4)` -> `uar_age_band_3_4`, `<4` -> `uar_age_band_lt4`, `>=6` ->
    `uar_age_band_ge6`; a decimal point becomes `p` (dots in leaderboard columns mean searched parameters)."""
    text = label.replace(">=", "ge").replace("<", "lt").strip("[)").replace(", ", "_").replace(".", "p")
    return f"uar_age_band_{text}"


def age_band_metrics(targets: np.ndarray, predictions: np.ndarray, ages: np.ndarray, edges: list[float],
                     min_clips: int) -> dict[str, float]:
    """`uar_age_band_<band>` for each scored band; `uar_age_gap` (best scored band - worst; NaN with fewer than two
    scored bands), `uar_age_worst` (the worst band's UAR), `uar_age_bands` (bands scored) and
    `uar_age_bands_left_out` (bands with clips but too few of a class). Clips without an age are left out."""
    labels = age_bands(ages, edges)
    known = labels != "unknown"
    classes = np.unique(targets)
    scores: dict[str, float] = {}
    left_out = 0
    for band in sorted(set(labels[known].tolist()), key=_band_order):
        mask = labels == band
        counts = np.array([np.sum(targets[mask] == c) for c in classes])
        if counts.min() < min_clips:
            left_out += 1
            continue
        scores[band_key(band)] = recall_average(targets[mask], predictions[mask])
    values = list(scores.values())
    return {**scores,
            "uar_age_gap": max(values) - min(values) if len(values) >= 2 else math.nan,
            "uar_age_worst": min(values) if values else math.nan,
            "uar_age_bands": float(len(values)), "uar_age_bands_left_out": float(left_out)}


def _band_order(label: str) -> float:
    """Bands by their lower edge (`<a` first, `>=b` last), not alphabetically (`[10, 11)` after `[9, 10)`)."""
    if label.startswith("<"):
        return -math.inf
    if label.startswith(">="):
        return float(label[2:])
    return float(label.strip("[").split(",")[0])


def speaker_metrics(targets: np.ndarray, predictions: np.ndarray, speakers: np.ndarray, min_clips: int
                    ) -> dict[str, float]:
    """`uar_speaker_p10` (10th percentile of per-speaker UAR, linear interpolation), `uar_speaker_min` and
    `uar_speakers` (speakers scored: those with at least `min_clips` clips)."""
    values = []
    for speaker in np.unique(speakers):
        mask = speakers == speaker
        if mask.sum() >= min_clips:
            values.append(recall_average(targets[mask], predictions[mask]))
    return {"uar_speaker_p10": float(np.percentile(values, SPEAKER_QUANTILE)) if values else math.nan,
            "uar_speaker_min": float(min(values)) if values else math.nan,
            "uar_speakers": float(len(values))}


def bias_metrics(targets: np.ndarray, probabilities: np.ndarray, ages: np.ndarray, speakers: np.ndarray | None,
                 edges: list[float], min_clips: int) -> dict[str, float]:
    """The age-band metrics when any clip has an age, the speaker metrics when the rows have speakers. A metric these
    rows cannot give (the gap with fewer than two bands scored, any UAR with no band or speaker scored) is left out
    rather than NaN, so JSON records stay comparable; the fold mean and score then leave the fold out (NaN when no
    fold has it, and a search objective NaN everywhere fails the trial). The counts are always there."""
    predictions = probabilities.argmax(axis=1)
    metrics: dict[str, float] = {}
    if np.isfinite(ages).any():
        metrics.update(age_band_metrics(targets, predictions, ages, edges, min_clips))
    if speakers is not None:
        metrics.update(speaker_metrics(targets, predictions, speakers, min_clips))
    return {name: value for name, value in metrics.items() if math.isfinite(value)}
