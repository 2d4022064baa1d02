"""`--log-to tensorboard,mlflow,wandb`: Ray Tune's own logger callbacks, one run per trial in each tracker.

- tensorboard: Tune writes TensorBoard event files into every trial folder (`trial_<id>/events.out.tfevents.*`)
  whenever tensorboardX is installed; `--log-to tensorboard` makes sure its TBXLoggerCallback is there.
- mlflow: `mlruns/` in the run folder by default, holding an SQLite store (`mlruns/mlflow.db`), or `--mlflow-uri`.
  MLflow 3 keeps its plain-file store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE=true; a
  `--mlflow-uri file:...` is passed as given.
- wandb: offline (WANDB_MODE=offline unless set), its files in `wandb/` of the run folder; `wandb sync` uploads.

Light module (no Ray import at the top): `tune.run --help` and the flag checks import it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from core.errors import UserError

TRACKERS = ("tensorboard", "mlflow", "wandb")
# tracker -> (module it needs, how to install it)
PACKAGES = {"tensorboard": ("tensorboardX", "pip install tensorboardX"),
            "mlflow": ("mlflow", "pip install 'audiotune[mlflow]'"),
            "wandb": ("wandb", "pip install 'audiotune[wandb]'")}
MLFLOW_FOLDER, MLFLOW_FILE = "mlruns", "mlflow.db"


def parse_trackers(text: str | None) -> list[str]:
    """`"mlflow, tensorboard"` -> `["mlflow", "tensorboard"]` (in the order of TRACKERS, no repeats)."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    unknown = sorted(set(names) - set(TRACKERS))
    if unknown:
        raise UserError(f"--log-to: unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(TRACKERS)}")
    return [name for name in TRACKERS if name in names]


def check_trackers(names: list[str]) -> None:
    """A tracker whose package is missing is named with the extra that installs it, before Ray starts."""
    for name in names:
        module, install = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--log-to {name}: the {module} package is not installed ({install})")


def mlflow_uri(given: str | None, run_folder: str, storage_is_uri: bool) -> str:
    """`--mlflow-uri`, or an SQLite database in a local run folder."""
    if given:
        return given
    if storage_is_uri:
        raise UserError("--log-to mlflow with a --storage URI: give --mlflow-uri (e.g. http://HOST:5000 or "
                        "sqlite:///PATH/mlflow.db); the default database lives in a local run folder")
    os.makedirs(f"{run_folder}/{MLFLOW_FOLDER}", exist_ok=True)  # SQLite makes the file, not its folder
    return f"sqlite:///{run_folder}/{MLFLOW_FOLDER}/{MLFLOW_FILE}"


def tracker_callbacks(names: list[str], experiment: str, run_folder: str, storage_is_uri: bool,
                      mlflow_tracking_uri: str | None = None) -> list[Any]:
    """Tune logger callbacks for `names`, each writing one run per trial."""
    check_trackers(names)
    callbacks: list[Any] = []
    if "tensorboard" in names:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(mlflow_tracking_uri, run_folder, storage_is_uri),
                                              experiment_name=experiment))
    if "wandb" in names:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Offline unless the user chose otherwise: nothing leaves the machine without an explicit WANDB_MODE.
        # Set here too because Ray's callback reads it in this process to decide whether it needs an API key.
        mode = os.environ.setdefault("WANDB_MODE", "offline")
        where = {} if storage_is_uri else {"dir": run_folder}  # wandb.init puts its wandb/ folder in `dir`
        callbacks.append(WandbLoggerCallback(project=experiment, mode=mode, **where))
    return callbacks
