"""The page says what its numbers are (issue 21, item 9): the winner's out-of-fold report is selection-optimistic
(the winner and its epoch e* were chosen on those same folds); only the held-out test score is unbiased."""

from __future__ import annotations

import json
from pathlib import Path

from tune.results.page import Folder, render


def test_the_out_of_fold_report_is_called_selection_optimistic(tmp_path: Path) -> None:
    (tmp_path / "leaderboard.csv").write_text("rank,trial_id,status,uar_score,uar_std,uar_folds,score_epoch,epochs,"
                                              "error\n1,7554e379,finished,0.712,0.02,0.70 0.72,4,6,\n")
    (tmp_path / "report.json").write_text(json.dumps({"clips": 40, "epoch": 4, "metrics": {"uar": 0.71}}))
    page = render(Folder(str(tmp_path)), None)
    out_of_fold = page.index("out-of-fold predictions")
    note = page.lower().index("selection-optimistic")
    assert 0 < note - out_of_fold < 600  # beside the report it qualifies
    assert "only the held-out test score" in page
