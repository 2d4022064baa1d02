"""What one trial asks Ray for: a per-model default (Wav2Vec2 needs more than ResNet), overridden by
--cpus-per-trial/--gpus-per-trial; with --fold-parallel, one placement-group bundle per fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:
    from ray.tune import PlacementGroupFactory


@dataclass(frozen=True)
class TrialResources:
    cpus: float
    gpus: float  # used only when the cluster has GPUs; fractions share one GPU between trials


# Measured on this project's CPU timings (env-notes): Wav2Vec2-base is ~7x Whisper-base per step and needs
# ~6 GB; a ResNet50 on mel frames or a Whisper encoder shares a GPU with three others comfortably.
MODEL_RESOURCES: dict[str, TrialResources] = {
    "whisper": TrialResources(cpus=1.0, gpus=0.25),
    "resnet50": TrialResources(cpus=1.0, gpus=0.25),
    "wav2vec2": TrialResources(cpus=2.0, gpus=0.5),
}
FALLBACK = TrialResources(cpus=1.0, gpus=0.5)

# With --fold-parallel, the trial's own process only coordinates; it keeps this sliver of the trial's CPUs.
DRIVER_CPU = 0.05


def default_resources(model: str) -> TrialResources:
    return MODEL_RESOURCES.get(model, FALLBACK)


def resolve_gpus(requested: float | None, model: str, available: float, where: str = "the Ray cluster") -> float:
    """--gpus-per-trial as given (checked against the cluster), else the model's share when there are GPUs."""
    if requested is None:
        return default_resources(model).gpus if available > 0 else 0.0
    if requested > available:
        raise UserError(f"--gpus-per-trial {requested:g} but {where} has {available:g} GPUs "
                        "(use 0 on CPU-only machines)")
    return requested


def fold_bundles(cpus: float, gpus: float, folds: int) -> list[dict[str, float]]:
    """Trial driver bundle, then one bundle per fold sharing the trial's CPUs and GPUs equally (0.25 GPU per fold
    for 1 GPU over 4 folds). The trial's total stays exactly what --cpus/--gpus-per-trial say."""
    if cpus <= DRIVER_CPU:
        raise UserError(f"--cpus-per-trial {cpus:g}: --fold-parallel needs more than {DRIVER_CPU:g}")
    fold = {"CPU": _share(cpus - DRIVER_CPU, folds)}
    if gpus > 0:
        fold["GPU"] = _share(gpus, folds)
    return [{"CPU": DRIVER_CPU}] + [dict(fold) for _ in range(folds)]


def _share(total: float, parts: int) -> float:
    """total / parts rounded down to Ray's resource precision (1e-4), so the bundles never add up to more."""
    return math.floor(total / parts * 1e4) / 1e4


def trial_resources(cpus: float, gpus: float, folds: int, fold_parallel: bool) -> PlacementGroupFactory:
    from ray.tune import PlacementGroupFactory  # here, so the table above is importable without Ray

    if fold_parallel:
        return PlacementGroupFactory(fold_bundles(cpus, gpus, folds), strategy="PACK")
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
    return PlacementGroupFactory([bundle])
