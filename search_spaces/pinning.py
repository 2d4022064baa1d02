"""`--set KEY=VALUE` on a key the space searches pins it: the key becomes a constant of every trial instead of
being silently replaced by the sampled value. The space's define-by-run code still runs unchanged (its branches
see the pinned value), so conditional parameters follow the pin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from search_spaces import SPACES


class PinnedTrial:
    """An `optuna.Trial` stand-in whose `suggest_*(key, ...)` returns the pinned value for pinned keys."""

    def __init__(self, trial: optuna.Trial, pinned: dict[str, Any]) -> None:
        self._trial = trial
        self._pinned = pinned
        self.used: dict[str, Any] = {}  # pinned keys the space asked for

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attribute
        return self._suggest(attribute)

    def _suggest(self, suggest: Callable[..., Any]) -> Callable[..., Any]:
        def pinned_or_sampled(key: str, *args: Any, **kwargs: Any) -> Any:
            if key in self._pinned:
                self.used[key] = self._pinned[key]
                return self._pinned[key]
            return suggest(key, *args, **kwargs)

        return pinned_or_sampled


@dataclass(frozen=True)
class PinnedSpace:
    """The define-by-run function given to OptunaSearch. Picklable (the space is looked up by name), because
    Tune pickles the searcher into its experiment checkpoint."""

    space: str
    pinned: dict[str, Any] = field(default_factory=dict)
    demo: bool = False  # --demo: the space's demo ranges

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        proxy = PinnedTrial(trial, self.pinned)
        constants = SPACES.get(self.space).define_for(self.demo)(proxy) or {}  # type: ignore[arg-type]
        return {**constants, **proxy.used}

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """All of a trial's overrides: sampled values plus constants (pins included)."""
        constants = self(trial)
        return {**trial.params, **constants}
