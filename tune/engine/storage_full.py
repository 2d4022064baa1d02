"""A --storage that fills up during a search: recognise the failure (ENOSPC, also wrapped by Ray), stop the search
gracefully at the first trial that could not save, and keep Ray's tracebacks of it out of the user's log."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from pathlib import Path
from typing import Any

import cloudpickle
from ray.tune import Callback
from ray.tune.experiment import Trial

from tune.engine.private_api import RAY_SYNCER_LOGGER, forgive_failure


def out_of_space(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it wraps (Ray keeps a trial's own exception as `.cause`), is ENOSPC."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and (error.errno == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(error)):
            return True
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return False


class StorageFull:
    """What `StopWhenStorageFull` saw, for the CLI in the same (driver) process: the callback itself is pickled
    with the experiment, so a restored search runs another instance of it."""

    trial: str | None = None
    finished = 0

    @classmethod
    def reset(cls) -> None:
        cls.trial, cls.finished = None, 0


def failed_for_space(trial: Trial) -> bool:
    """Whether the trial's latest failure was a full disk (its error files are in the driver's own staging
    folder, written before the failure callbacks run)."""
    if trial.pickled_error_file and os.path.isfile(trial.pickled_error_file):
        with contextlib.suppress(Exception), open(trial.pickled_error_file, "rb") as stream:
            return out_of_space(cloudpickle.load(stream))
    if trial.error_file and os.path.isfile(trial.error_file):  # appended per failure: the last one counts
        latest = Path(trial.error_file).read_text(errors="replace").rsplit("Failure #", 1)[-1]
        return os.strerror(errno.ENOSPC) in latest
    return False


class StopWhenStorageFull(Callback):
    """A trial that failed because --storage is full stops the search at once and gracefully (Tune saves what it
    can, the trial stays unfinished, to resume from its last checkpoint), instead of retrying it and then failing
    every remaining trial the same way. The failure is not counted against the trial's retries: the disk failed,
    not the config."""

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):
            forgive_failure(trial)
            self._stop(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if failed_for_space(trial):
            self._stop(trials, trial)

    @staticmethod
    def _stop(trials: list[Trial], trial: Trial) -> None:
        if StorageFull.trial is None:
            StorageFull.trial = trial.trial_id
        StorageFull.finished = sum(t.status == Trial.TERMINATED for t in trials)
        tune_stop = signal.getsignal(signal.SIGUSR1)  # Tune's graceful stop, as for Ctrl-C (tune/engine/interrupt.py)
        if callable(tune_stop):
            logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # its restore hint is not our command
            tune_stop(signal.SIGUSR1, None)


class HideStorageFullLogs(logging.Filter):
    """Drops Ray's tracebacks of a full disk (trial failures, state saves): the CLI says it once, plainly."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and out_of_space(record.exc_info[1]):
            return False
        return os.strerror(errno.ENOSPC) not in record.getMessage()


def hide_storage_full_logs() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state",
                 RAY_SYNCER_LOGGER, "ray.tune.tune"):
        logging.getLogger(name).addFilter(HideStorageFullLogs())
