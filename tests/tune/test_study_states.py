"""A trial ASHA stopped is COMPLETE in the study with the score of the epochs it ran (issue 21, item 11): a PRUNED
trial has no value, so optuna-dashboard's history, `study.best_trial` and the importance evaluators saw only the
trials that ran to the end. (The real search is checked in tests/tune/test_repeatable_search.py.)"""

from __future__ import annotations

from optuna.trial import TrialState

from tune.engine.study import finished_state
from tune.results.leaderboard import ASHA, ERROR


def test_an_asha_stop_is_complete_and_an_error_fails() -> None:
    stopped = {"epoch": 2, "uar_score": 0.774}
    assert finished_state(stopped, epochs=10, errored=False) == (TrialState.COMPLETE, ASHA)
    assert finished_state({"epoch": 10}, epochs=10, errored=False)[0] == TrialState.COMPLETE
    assert finished_state({"epoch": 3, "error": "diverged"}, epochs=10, errored=False) == (TrialState.FAIL, ERROR)
