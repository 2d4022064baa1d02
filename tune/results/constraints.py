"""Search constraints (`tune.run --constraint "uar_age_gap<=0.10"`): a bound on a metric read at the trial's e*,
like its score. A trial that breaks one is infeasible: Optuna is told through `Trial.set_constraint` (TPE then models
the feasible region; tune/engine/search.py), the leaderboard marks it, and the export is the best feasible trial."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from core.errors import UserError

PATTERN = re.compile(r"\s*([A-Za-z0-9_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*")


@dataclass(frozen=True)
class Constraint:
    metric: str  # a registered metric (core/metrics.py), read at e* as `{metric}_score`
    op: str  # "<=" or ">="
    bound: float

    @property
    def key(self) -> str:
        return f"{self.metric}_score"

    @property
    def text(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, row: dict[str, Any]) -> float:
        """Optuna's constraint value: <= 0 when met, else by how much it is broken; a missing or NaN value (say an
        age gap with fewer than two bands scored) counts as broken by 1."""
        value = row.get(self.key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return 1.0
        return float(value - self.bound if self.op == "<=" else self.bound - value)


def parse_constraint(text: str) -> Constraint:
    """`METRIC<=X` or `METRIC>=X`; the metric is checked by the caller against the registry."""
    match = PATTERN.fullmatch(text)
    bound = math.nan
    if match:
        try:
            bound = float(match.group(3))
        except ValueError:
            bound = math.nan
    if not match or not math.isfinite(bound):
        raise UserError(f"--constraint {text!r}: write METRIC<=X or METRIC>=X, e.g. \"uar_age_gap<=0.10\" or "
                        "\"uar_speaker_p10>=0.5\"")
    return Constraint(match.group(1), match.group(2), bound)


def feasible(row: dict[str, Any], constraints: list[Constraint]) -> bool:
    return all(constraint.violation(row) <= 0 for constraint in constraints)
