"""Every use of a private Ray, Optuna or CPython API, in one module: each kept only where no public API does the
job, with the version it was checked against and why. tests/tune/test_private_api.py fails when a pinned version
(requirements/constraints.txt) changes one of them; then re-check this file before moving the pin.

Checked against: ray 2.60.0, optuna 5.0.0, CPython 3.11.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import optuna
    from ray.tune import ResultGrid
    from ray.tune.experiment import Trial
    from ray.tune.search.optuna import OptunaSearch

__all__ = ["CHECKED", "RAY_SYNCER_LOGGER", "exit_now", "forgive_failure", "grid_trials", "loopback_init_options",
           "open_optuna_trial", "validate_frozen_trial"]

CHECKED = {"ray": "2.60.0", "optuna": "5.0.0", "python": "3.11"}

# Ray's checkpoint syncer logs a full disk's traceback under this (internal) module's logger; the CLI filters it and
# says it once, plainly (tune/engine/storage_full.py). No public logger name covers it.
RAY_SYNCER_LOGGER = "ray.train._internal.syncer"


def exit_now(code: int) -> NoReturn:
    """Run the exit hooks (Ray's shutdown, logging's flush, a tracker's `finish`), then end the process without the
    interpreter's teardown. Why: freeing torch's, transformers' and Ray's objects one by one took 5-7 s of a
    search's wall time (bench/README.md, search_overhead); `atexit._run_exitfuncs` is CPython's own entry point to
    the hooks a normal exit runs, and `os._exit` is public (it skips only the teardown)."""
    atexit._run_exitfuncs()
    os._exit(code)


def loopback_init_options() -> dict[str, Any]:
    """`ray.init` options of a local Ray that advertises 127.0.0.1 as its node address. Why: the environment
    (tune/engine/cluster.py LOOPBACK_ENV) makes Ray's listeners bind loopback, but the node address it registers
    would still be the machine's own; only ray.init's private `_node_ip_address` sets it."""
    return {"_node_ip_address": "127.0.0.1"}


def forgive_failure(trial: Trial) -> None:
    """Do not count the trial's latest failure against its `max_failures`. Why: a full --storage is the disk's
    failure, not the config's (tune/engine/storage_full.py); Tune has no public way to un-count a retry."""
    trial.run_metadata.num_failures -= 1


def validate_frozen_trial(frozen: optuna.trial.FrozenTrial) -> None:
    """What `Study.add_trial` checks before storing a trial. Why: the live study (tune/engine/study.py) stores rows
    through the storage itself to keep their storage ids, so it runs the same check Optuna's public path runs."""
    frozen._validate()


def grid_trials(grid: ResultGrid) -> Sequence[Trial]:
    """Tune's Trial objects behind a ResultGrid (their `experiment_tag` carries the sampling order, kept across
    --resume). Why: ResultGrid exposes Results only, which carry no experiment tag."""
    analysis = getattr(grid, "_experiment_analysis", None)
    return list(getattr(analysis, "trials", None) or [])


def open_optuna_trial(searcher: OptunaSearch, trial_id: str) -> optuna.Trial | None:
    """The Optuna trial OptunaSearch asked for Tune's `trial_id`, while it is not yet told (None once it is, or for
    an unknown id). Why: `Trial.set_constraint` (--constraint) must reach the trial before OptunaSearch tells the
    study its value, and OptunaSearch keeps its Tune-to-Optuna map private."""
    if trial_id in searcher._completed_trials:
        return None
    return searcher._ot_trials.get(trial_id)
