"""The search summary printed after every finished trial, on real `ray.tune.experiment.Trial` objects."""

from __future__ import annotations

import io
import math
import re

import pytest
from ray.tune.experiment import Trial

from tune.engine.progress import TrialLines, duration, search_summary


def trial(trial_id: str, status: str, **result: float | str) -> Trial:
    made = Trial("cross_validate", config={"optim.lr": 1e-3}, trial_id=trial_id, stub=True)
    if result:
        made.update_last_result(dict(result))
    made.set_status(status)
    return made


def finished(trial_id: str, score: float, std: float, seconds: float) -> Trial:
    return trial(trial_id, Trial.TERMINATED, uar_score=score, uar_score_std=std, time_total_s=seconds, epoch=3)


def test_summary_counts_best_and_estimate() -> None:
    trials = [finished("aaaa0001", 0.651, 0.030, 100.0),
              finished("aaaa0002", 0.712, 0.021, 200.0),
              trial("aaaa0003", Trial.TERMINATED, uar_score=math.nan, error="diverged: loss is nan",
                    time_total_s=60.0),  # a diverged config: done and errored, never the best
              finished("aaaa0004", 0.700, 0.010, 240.0),
              trial("aaaa0005", Trial.RUNNING, uar_score=0.99, time_total_s=30.0),  # unfinished: not the best yet
              trial("aaaa0006", Trial.RUNNING),
              trial("aaaa0007", Trial.PENDING)]
    # 4 of 10 done, mean trial time (100 + 200 + 60 + 240) / 4 = 150 s; 6 left over 2 at once: 450 s = 8 min
    line = search_summary(trials, trials[3], total=10, metric="uar", mode="max", elapsed=12 * 60 + 5, concurrency=2)
    assert line == "4/10 done, 2 running, 1 errored · best uar 0.712 ± 0.021 (trial aaaa0002) · 12 min elapsed, " \
                   "~8 min left"


def test_summary_counts_the_trial_being_reported_as_done() -> None:
    """Tune calls on_trial_complete while the trial is still RUNNING; it counts as done, not running."""
    ending = finished("bbbb0001", 0.6, 0.1, 30.0)
    ending.set_status(Trial.RUNNING)
    line = search_summary([ending, trial("bbbb0002", Trial.RUNNING)], ending, total=3, metric="uar", mode="max",
                          elapsed=40, concurrency=2)
    assert line.startswith("1/3 done, 1 running, 0 errored · best uar 0.600 ± 0.100 (trial bbbb0001) · 40 s elapsed")
    assert line.endswith("~30 s left")  # 2 left x 30 s / 2 at once


def test_summary_minimising_and_without_times() -> None:
    trials = [trial("cccc0001", Trial.TERMINATED, rmse_score=0.30, rmse_score_std=0.02),
              trial("cccc0002", Trial.TERMINATED, rmse_score=0.25, rmse_score_std=0.05),
              trial("cccc0003", Trial.ERROR)]  # Tune gave up on it (no result at all)
    line = search_summary(trials, None, total=5, metric="rmse", mode="min", elapsed=5, concurrency=1)
    assert line == "3/5 done, 0 running, 1 errored · best rmse 0.250 ± 0.050 (trial cccc0002) · 5 s elapsed, ~? left"


def test_summary_before_any_score_and_at_the_end() -> None:
    only = trial("dddd0001", Trial.ERROR)
    assert search_summary([only], only, 1, "uar", "max", 3 * 3600, 1) == \
        "1/1 done, 0 running, 1 errored · best uar none yet · 3.0 h elapsed, nothing left"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (60, "1 min"), (7199, "120 min"),
                                               (7200, "2.0 h")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_callback_prints_the_summary_after_the_trial_line() -> None:
    stream = io.StringIO()
    lines = TrialLines("uar", epochs=3, stream=stream)
    lines.setup(total_num_samples=4)
    first, second = finished("eeee0001", 0.7, 0.02, 10.0), trial("eeee0002", Trial.RUNNING)
    first.set_status(Trial.RUNNING)
    lines.on_step_begin(0, [first, second])
    lines.on_trial_complete(1, [first, second], first)
    printed = stream.getvalue().splitlines()
    assert printed[0] == "trial eeee0001 finished at epoch 3: score uar 0.700 at epoch 0"
    assert re.fullmatch(r"1/4 done, 1 running, 0 errored · best uar 0\.700 ± 0\.020 \(trial eeee0001\) · "
                        r"\d+ s elapsed, ~15 s left", printed[1]), printed[1]  # 3 left x 10 s / 2 seen running
