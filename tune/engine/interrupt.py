"""Ctrl-C during a search: stop gracefully, with every reported checkpoint in the saved state, and tell the CLI
that it happened (it prints the resume command instead of a partial leaderboard).

Tune's own SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER, tune/engine/cluster.py): it stops at once, and a
checkpoint reported in the same instant is not yet registered when Tune saves its state for the last time, so the
trial would restart from scratch. Instead `Interruption` records the Ctrl-C and the `StopWhenSaved` callback calls
Tune's stop (its SIGUSR1 handler, the same graceful stop) at the first step with no checkpoint in flight.
A second Ctrl-C raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType, TracebackType
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial


class Interruption:
    """Owns SIGINT around `Tuner.fit()`; `received` tells whether the user interrupted it."""

    def __init__(self) -> None:
        self.received = False
        self.stopping = False
        self._previous: Any = signal.SIG_DFL

    def __enter__(self) -> Interruption:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        signal.signal(signal.SIGINT, self._previous)
        if isinstance(error, KeyboardInterrupt):
            self.received = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True
        print("\ninterrupt: stopping trials and saving the search state (Ctrl-C again to abort)", file=sys.stderr,
              flush=True)

    @staticmethod
    def current() -> Interruption | None:
        """The Interruption whose handler is installed now, if any (the callback finds it without holding it)."""
        owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
        return owner if isinstance(owner, Interruption) else None


class StopWhenSaved(Callback):
    """Performs a requested stop once no trial is saving. Stateless, so it pickles with the experiment and works
    the same in a restored search."""

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        interruption = Interruption.current()
        if interruption is None or not interruption.received or interruption.stopping:
            return
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if any(trial.is_saving for trial in trials) or not callable(tune_stop):
            return
        interruption.stopping = True
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # its restore hint is not our command
        tune_stop(signal.SIGUSR1, None)
