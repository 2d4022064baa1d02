"""Probabilities that mean what they say, and the threshold a screening decision is taken at.

Temperature scaling (Guo et al. 2017): one scalar T > 0 divides the logits, softmax(z / T); fitted by minimising the
negative log-likelihood of held-out predictions (the search's out-of-fold predictions at e*, never the test set). It
keeps every argmax and the ROC curve (a monotone map of each clip's score), and changes only how sure the model says
it is. The logits are recovered from the stored probabilities as log p: log-softmax is the logits minus a per-clip
constant, which softmax(z / T) ignores.

The operating point is a threshold on the positive class's (calibrated) probability, chosen on the same out-of-fold
predictions with sklearn's `roc_curve`: Youden's J (max sensitivity + specificity - 1), the highest threshold that
reaches a sensitivity, the lowest that keeps a specificity, or a fixed value. (sklearn's TunedThresholdClassifierCV
optimises one score of an estimator it can refit; it has no sensitivity-at-least rule and we hold predictions, not an
estimator, so `roc_curve` is read directly.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import brier_score_loss, log_loss, roc_curve

from core.errors import UserError

ECE_BINS = 15  # Guo et al.'s bin count
FLOOR = 1e-12  # log of a probability that underflowed to 0 in float32


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """log p, the logits up to a per-clip constant (floored where float32 softmax underflowed)."""
    return np.log(np.clip(probabilities.astype(np.float64), FLOOR, 1.0))


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(log p / T) on these predictions (class ids in `targets`); L-BFGS on
    log T, so T stays positive without a bound."""
    logits = torch.as_tensor(log_probabilities(probabilities))
    labels = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return temperature if math.isfinite(temperature) else 1.0


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the calibrated probabilities (T = 1 gives `probabilities` back)."""
    if temperature == 1.0:
        return probabilities
    scaled = log_probabilities(probabilities) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE (Guo et al.): clips binned by their highest probability into `bins` equal-width bins; the
    clip-weighted mean gap between each bin's mean confidence and its accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(targets)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.sum() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(total / len(confidence)) if len(confidence) else math.nan


def calibration_scores(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """ECE (15 bins), Brier score (sklearn's; the binary one for two classes) and log-loss of these predictions."""
    labels = list(range(probabilities.shape[1]))
    probabilities = probabilities.astype(np.float64)  # float32 rows miss 1 by ~1e-7, which sklearn warns about
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return {"ece": expected_calibration_error(probabilities, targets),
            "brier": float(brier_score_loss(targets, probabilities, labels=labels)),
            "log_loss": float(log_loss(targets, probabilities, labels=labels))}


# --- the operating point -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingRule:
    """How a threshold is chosen: `youden`, `sensitivity` or `specificity` (at least `value`), or `fixed`."""

    kind: str
    value: float = math.nan

    @property
    def text(self) -> str:
        return {"youden": "youden", "fixed": f"{self.value:g}"}.get(self.kind, f"{self.kind}={self.value:g}")


def parse_operating_point(text: str, flag: str = "--operating-point") -> OperatingRule:
    """`youden`, `sensitivity=0.90`, `specificity=0.90` or a threshold such as `0.5`; a UserError otherwise."""
    given = text.strip().lower()
    if given == "youden":
        return OperatingRule("youden")
    match = re.fullmatch(r"(sensitivity|specificity)\s*=\s*([0-9.eE+-]+)", given)
    number = match.group(2) if match else given
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not 0 < value < 1 or (not match and not re.fullmatch(r"[0-9.eE+-]+", given)):
        raise UserError(f"{flag} {text!r}: give youden, sensitivity=X, specificity=X or a threshold X, with "
                        "0 < X < 1 (e.g. sensitivity=0.90)")
    return OperatingRule(match.group(1), value) if match else OperatingRule("fixed", value)


def rates(is_positive: np.ndarray, positive_probability: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity and specificity of the decision `p >= threshold`."""
    said = positive_probability >= threshold
    return {"sensitivity": float(said[is_positive].mean()) if is_positive.any() else math.nan,
            "specificity": float((~said)[~is_positive].mean()) if (~is_positive).any() else math.nan}


def choose_threshold(is_positive: np.ndarray, positive_probability: np.ndarray, rule: OperatingRule) -> float:
    """The threshold on the positive probability that `rule` picks on these predictions (decision: p >= t).
    Sensitivity: the highest threshold whose sensitivity reaches the value (the most specific such point);
    specificity: the lowest threshold whose specificity does."""
    if rule.kind == "fixed":
        return rule.value
    if is_positive.all() or not is_positive.any():
        raise UserError(f"--operating-point {rule.text}: the out-of-fold predictions hold one class only")
    fpr, tpr, thresholds = roc_curve(is_positive, positive_probability, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # the first point (threshold inf) says no clip is positive
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule.kind == "youden":
        best = int(np.argmax(tpr - fpr))
    elif rule.kind == "sensitivity":
        best = int(np.flatnonzero(tpr >= rule.value - 1e-12)[0])  # thresholds fall: the first is the highest
    else:
        keep = np.flatnonzero(1 - fpr >= rule.value - 1e-12)
        if not len(keep):
            raise UserError(f"--operating-point {rule.text}: no threshold keeps that specificity on the "
                            "out-of-fold predictions")
        best = int(keep[-1])
    return float(thresholds[best])


def operating_point(is_positive: np.ndarray, positive_probability: np.ndarray, rule: OperatingRule,
                    positive: str) -> dict[str, Any]:
    """model.json's `operating_point`: the threshold, how it was chosen, and its rates on the predictions it was
    chosen on."""
    threshold = choose_threshold(is_positive, positive_probability, rule)
    chosen_on = ("fixed by --operating-point" if rule.kind == "fixed" else
                 "out-of-fold predictions of the search's winner at e* (calibrated)")
    return {"threshold": threshold, "rule": rule.text, "positive_class": positive, "chosen_on": chosen_on,
            "out_of_fold": {**rates(is_positive, positive_probability, threshold),
                            "clips": int(len(is_positive))}}
