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


def check_fits(cpus: float, gpus: float, folds: int, fold_parallel: bool, nodes: list[dict[str, float]],
               where: str) -> None:
    """A trial whose bundles fit on no node would wait for ever: refuse it before any trial starts."""
    bundles = fold_bundles(cpus, gpus, folds) if fold_parallel else [{"CPU": cpus, **({"GPU": gpus} if gpus else {})}]
    for bundle in bundles:
        if not any(all(node.get(kind, 0.0) >= amount for kind, amount in bundle.items()) for node in nodes):
            largest = max(nodes, key=lambda node: (node.get("CPU", 0.0), node.get("GPU", 0.0)))
            raise UserError(f"--cpus-per-trial {cpus:g} / --gpus-per-trial {gpus:g}: a trial needs "
                            f"{_describe(bundle)} on one node, but the largest node of {where} has "
                            f"{_describe(largest)}")
    total = {kind: sum(node.get(kind, 0.0) for node in nodes) for kind in ("CPU", "GPU")}
    for kind in ("CPU", "GPU"):
        needed = sum(bundle.get(kind, 0.0) for bundle in bundles)
        if needed > total[kind] + 1e-9:
            raise UserError(f"a trial needs {needed:g} {kind} in all, but {where} has {total[kind]:g}")


def check_device(device: str, gpus: float) -> None:
    """train.device=cuda needs a GPU in every trial: Ray hides the GPUs a trial was not given."""
    if device.startswith("cuda") and gpus <= 0:
        raise UserError(f"train.device={device!r} but trials get no GPU (--gpus-per-trial {gpus:g}, or no GPU "
                        "where they run); use train.device=auto or cpu, or give GPUs")


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{resources.get(kind, 0.0):g} {kind}" for kind in ("CPU", "GPU"))


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
