"""The HTML page of a run folder or model folder (`report.html`): the leaderboard (leaderboard.csv), the winner and
its validated recipe (best_config.json), the search's figures (plots/*.png, embedded), the winner's out-of-fold report
(report.json) and, when the folder has a final model, its held-out test report and figures.

Written by the search and tune.final when they end, and by `python -m tune.report` (tune/report.py) on demand.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from typing import Any

from core.errors import UserError

REPORT = "report.html"
PLOTS = "plots"
CAPTIONS = {  # file in plots/ -> what it shows (also the order on the page)
    "optimisation_history.png": "Each trial's score in the order the trials were sampled, and the best so far.",
    "learning_curves.png": "Fold-mean validation curve (± the folds' sample std) of the best-ranked trials; "
                           "★ marks the epoch the score is read at (e*).",
    "param_importances.png": "How much of the score's variation each searched parameter explains (Optuna's "
                             "fANOVA over the completed trials).",
    "slice.png": "Score against each searched parameter (one dot per completed trial; colour: sampling order).",
    "confusion_matrix.png": "Test set: confusion matrix (rows: true class, columns: predicted).",
    "roc_curve.png": "Test set: ROC curve of the positive class's probability; the dot is the operating point.",
    "reliability_diagram.png": "Test set: observed frequency against predicted probability (sklearn's "
                               "calibration_curve, 10 bins), before and after temperature scaling.",
    "uar_per_word.png": "Test set: UAR per target word with its speaker-bootstrap 95 % interval.",
    "uar_per_age_band.png": "Test set: UAR per age band with its speaker-bootstrap 95 % interval.",
    "layer_weights.png": "The final model's learned softmax weights over its encoder layers (model.layers=weighted).",
    "predicted_vs_true.png": "Test set: predicted against true value.",
    "mae_per_word.png": "Test set: mean absolute error per target word.",
    "mae_per_age_band.png": "Test set: mean absolute error per age band.",
}
OUT_OF_FOLD_NOTE = ("Selection-optimistic: the winner and its epoch e* were chosen on these same folds, so this "
                    "estimate runs high; only the held-out test score (tune.final) is unbiased.")
STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:72em;color:#222}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th{background:#f0f0f0}td.text{text-align:left}figure{display:inline-block;margin:.5em;
vertical-align:top;max-width:34em}figure img{max-width:100%}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.5em;font-size:.8em;overflow:auto}.note{color:#a60}"""


class Folder:
    """A folder on a local disk or behind a storage URI (what --storage accepts), read and written through
    pyarrow's file systems."""

    def __init__(self, location: str) -> None:
        import pyarrow.fs as pafs

        self.location = location.rstrip("/")
        try:
            if "://" in location:
                self.fs, path = pafs.FileSystem.from_uri(location)
            else:
                from pathlib import Path

                self.fs, path = pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
        except (OSError, ValueError) as error:
            raise UserError(f"{location}: cannot open it ({str(error).splitlines()[0]})") from error
        self.path = path.rstrip("/")
        self._pafs = pafs

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == self._pafs.FileType.Directory

    def has(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.path}/{name}").type == self._pafs.FileType.File

    def read(self, name: str) -> bytes | None:
        if not self.has(name):
            return None
        with self.fs.open_input_stream(f"{self.path}/{name}") as stream:
            return stream.read()

    def json(self, name: str) -> Any:
        data = self.read(name)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise UserError(f"{self.location}/{name}: not valid JSON ({error})") from error

    def files(self, folder: str) -> list[str]:
        selector = self._pafs.FileSelector(f"{self.path}/{folder}", allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == self._pafs.FileType.File)

    def write(self, name: str, data: bytes) -> str:
        with self.fs.open_output_stream(f"{self.path}/{name}") as stream:
            stream.write(data)
        return f"{self.location}/{name}"


# --- pieces of the page ----------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    """Scores to 4 decimals; small or large numbers (a learning rate) to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 0.01 <= abs(value) < 1e4 else f"{value:.4g}"
    return _text("" if value is None else value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_text(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f'<td class="text">{_text(v)}</td>' if isinstance(v, str) else
                                    f"<td>{_number(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figures(folder: Folder, skipped: dict[str, str]) -> str:
    names = [name for name in folder.files(PLOTS) if name.endswith(".png")]
    names.sort(key=lambda name: (list(CAPTIONS).index(name) if name in CAPTIONS else len(CAPTIONS), name))
    parts = []
    for name in names:
        data = base64.b64encode(folder.read(f"{PLOTS}/{name}") or b"").decode()
        parts.append(f'<figure><img alt="{_text(name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_text(name)}: {_text(CAPTIONS.get(name, ''))}</figcaption></figure>")
    parts.extend(f'<p class="note">not drawn: {_text(name)} ({_text(why)})</p>' for name, why in skipped.items())
    return "\n".join(parts) or '<p class="note">no figures in this folder</p>'


def leaderboard_section(run: Folder) -> tuple[str, str]:
    """(HTML of the leaderboard, the score column's metric)."""
    import io

    import pandas as pd

    try:
        table = pd.read_csv(io.BytesIO(run.read("leaderboard.csv") or b""), dtype={"trial_id": str})
    except (ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{run.location}/leaderboard.csv: unreadable ({error})") from error
    scores = [column for column in table.columns if column.endswith("_score")]
    if not {"rank", "trial_id", "status"} <= set(table.columns) or not scores:
        raise UserError(f"{run.location}/leaderboard.csv: not a tune.run leaderboard (columns rank, trial_id, "
                        "status and <metric>_score expected)")
    metric = scores[0].removesuffix("_score")
    fixed = ["rank", "trial_id", "status", "feasible", f"{metric}_score", f"{metric}_std", f"{metric}_folds",
             "score_epoch", "epochs"]
    params = [column for column in table.columns if "." in column]
    errors = "error" in table and table["error"].notna().any()  # only some leaderboards have the column
    columns = [c for c in fixed if c in table.columns] + params + (["error"] if errors else [])
    rows = [[None if pd.isna(v) else v for v in row] for row in table[columns].itertuples(index=False)]
    header = [c.split(".")[-1] if "." in c else c for c in columns]
    return (f"<h2>Leaderboard ({len(table)} trials, best first; score: fold-mean valid {_text(metric)} at e*)"
            f"</h2>{_table(header, rows)}"), metric


def best_section(export: dict[str, Any]) -> str:
    score = export.get("validated", {})
    folds = " ".join(f"{v:.3f}" for v in score.get("folds", []))
    params = _table(["parameter", "value"], [[key, value] for key, value in export.get("params", {}).items()])
    config = _text(json.dumps(export.get("config", {}), indent=2))
    return (f"<h2>Best trial {_text(export.get('trial_id'))}</h2><p>{_text(score.get('metric'))} "
            f"{score.get('score', float('nan')):.4f} ± {score.get('std', float('nan')):.4f} at epoch "
            f"{_text(score.get('epoch'))} of {_text(score.get('horizon'))}; folds {_text(folds)}</p>{params}"
            f"<details><summary>best_config.json (the validated recipe tune.final trains)</summary><pre>{config}"
            "</pre></details>")


def metrics_table(report: dict[str, Any]) -> str:
    metrics = report.get("metrics", {})
    return _table(list(metrics), [[metrics[key] for key in metrics]])


def groups_table(report: dict[str, Any], group: str) -> str:
    entries = report.get(f"per_{group}") or {}
    if not entries:
        return ""
    value = "uar" if "classes" in report else "mae"
    rows = [[name, entry.get(value), entry.get("ci_low"), entry.get("ci_high"), entry.get("clips"),
             entry.get("flag", "")] for name, entry in entries.items()]  # flag: e.g. one class, so no UAR
    return (f"<h3>{_text(value)} per {_text(group.replace('_', ' '))}</h3>"
            + _table([group, value, "95 % low", "95 % high", "clips", "flag"], rows))


def operating_point_section(report: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The decision the model folder takes: its threshold, how it was chosen, and its test rates with intervals."""
    point = report.get("operating_point")
    if not point:
        return ""
    chosen = metadata.get("operating_point") or {}
    rows = [[name, point.get(name), *(point.get(f"{name}_ci") or [None, None])] for name in
            ("sensitivity", "specificity", "ppv", "npv", "uar")]
    return (f"<h3>Operating point: {_text(chosen.get('positive_class', report.get('positive_class')))} when its "
            f"probability ≥ {_number(point.get('threshold'))}</h3><p>chosen by {_text(chosen.get('rule', '?'))} on "
            f"{_text(chosen.get('chosen_on', 'the out-of-fold predictions'))}; the test set's rates at it, with "
            "speaker-bootstrap 95 % intervals:</p>"
            + _table(["test set", "value", "95 % low", "95 % high"], rows))


def calibration_section(report: dict[str, Any]) -> str:
    calibration = report.get("calibration")
    if not calibration:
        return ""
    rows = []
    for where in ("out_of_fold", "test"):
        scores = calibration.get(where) or {}
        for when in ("before", "after"):
            if scores.get(when):
                rows.append([where.replace("_", "-"), when, scores[when].get("ece"), scores[when].get("brier"),
                             scores[when].get("log_loss")])
    return (f"<h3>Calibration: temperature {_number(calibration.get('temperature'))} "
            f"({_text(calibration.get('method'))}, fitted on the out-of-fold predictions)</h3>"
            + _table(["set", "calibration", "ECE (15 bins)", "Brier", "log-loss"], rows))


def comparison_section(finals: Sequence[Folder]) -> str:
    """Refit and fold ensemble side by side, when both were trained on the same test set."""
    reports = [(folder, folder.json("report.json") or {}) for folder in finals]
    if len(reports) < 2 or len({report.get("test_clips") for _, report in reports}) != 1:
        return ""
    rows = []
    for folder, report in reports:
        metrics, point = report.get("metrics", {}), report.get("operating_point") or {}
        after = ((report.get("calibration") or {}).get("test") or {}).get("after") or {}
        rows.append([report.get("model_kind", "refit"), folder.location.rsplit("/", 1)[-1], metrics.get("uar"),
                     metrics.get("auroc"), point.get("threshold"), point.get("sensitivity"),
                     point.get("specificity"), after.get("ece"), after.get("brier")])
    return ("<h2>Refit against fold ensemble (same test set)</h2>"
            + _table(["model", "folder", "uar", "auroc", "threshold", "sensitivity", "specificity", "ECE", "Brier"],
                     rows))


def final_section(final: Folder) -> str:
    report = final.json("report.json") or {}
    kind = report.get("model_kind", "refit")
    parts = [f"<h2>Final model: held-out test set ({_text(report.get('test_clips'))} clips; trained on "
             f"{_text(report.get('train_clips'))}; {_text(kind)})</h2><p>model folder: {_text(final.location)}</p>",
             metrics_table(report), operating_point_section(report, final.json("model.json") or {}),
             calibration_section(report)]
    if report.get("uar_ci"):
        low, high = report["uar_ci"]
        parts.append(f"<p>test uar 95 % interval (speaker bootstrap): {_number(low)} … {_number(high)}; positive "
                     f"class: {_text(report.get('positive_class'))}</p>")
    cv = report.get("cv_score") or {}
    if cv:
        parts.append(f"<p>cross-validated {_text(cv.get('metric'))} of this recipe in the search: "
                     f"{_number(cv.get('score'))} ± {_number(cv.get('std'))}</p>")
    if report.get("confusion_matrix"):
        classes = report.get("classes", [])
        parts.append("<h3>confusion matrix (rows: true)</h3>" + _table(
            ["true \\ predicted", *classes], [[name, *row] for name, row in zip(classes, report["confusion_matrix"],
                                                                              strict=False)]))
    parts.append(_figures(final, final.json(f"{PLOTS}/skipped.json") or {}))
    parts.extend(groups_table(report, group) for group in ("word", "age_band"))
    return "\n".join(parts)


def render(run: Folder | None, final: Folder | None) -> str:
    """The HTML page of a run folder and/or a final model folder."""
    title = "audiotune"
    parts = []
    if run is not None:
        export = run.json("best_config.json") or {}
        search = export.get("search", {})
        title = f"audiotune search {search.get('name') or run.location.rsplit('/', 1)[-1]}"
        leaderboard, _ = leaderboard_section(run)
        parts.append(f"<p>run folder {_text(run.location)}; space {_text(search.get('space'))}, "
                     f"{_text(search.get('trials'))} of {_text(search.get('num_samples'))} trials, "
                     f"{_text(search.get('seconds'))} s</p>")
        if export:
            parts.append(best_section(export))
        parts.append(leaderboard)
        parts.append("<h2>Search figures</h2>" + _figures(run, run.json(f"{PLOTS}/skipped.json") or {}))
        out_of_fold = run.json("report.json")
        if out_of_fold:
            parts.append(f"<h2>The winner's out-of-fold predictions ({_text(out_of_fold.get('clips'))} development "
                         f"clips, epoch {_text(out_of_fold.get('epoch'))})</h2>" + metrics_table(out_of_fold)
                         + f'<p class="note">{OUT_OF_FOLD_NOTE}</p>')
    if final is not None:
        parts.append(final_section(final))
        if run is not None:  # the other kind of final model of this run, when there is one
            kinds = [Folder(f"{run.location}/{name}") for name in ("final", "final_folds")]
            others = [folder for folder in kinds if folder.path != final.path and is_model_folder(folder)]
            parts.append(comparison_section([final, *others]))
            parts.extend(final_section(folder) for folder in others)
    elif run is not None:
        parts.append('<p class="note">no final model yet: python -m tune.final --config best_config.json</p>')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_text(title)}</title><style>{STYLE}</style>'
            f"</head><body><h1>{_text(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def is_run_folder(folder: Folder) -> bool:
    return folder.has("leaderboard.csv")


def is_model_folder(folder: Folder) -> bool:
    return folder.has("report.json") and folder.has("model.json")


def report_of(location: str, final: str | None = None) -> tuple[Folder, str]:
    """(the folder the page belongs in, the page) of a run folder or model folder; UserError for anything else."""
    folder = Folder(location)
    if not folder.is_dir():
        raise UserError(f"{location}: no such folder")
    finals = Folder(final) if final else None
    if finals is not None and not is_model_folder(finals):
        raise UserError(f"--final {final}: not a tune.final model folder (no report.json and model.json)")
    if is_run_folder(folder):
        if finals is None and is_model_folder(default := Folder(f"{folder.location}/final")):
            finals = default
        return folder, render(folder, finals)
    if is_model_folder(folder):
        return folder, render(None, folder)
    raise UserError(f"{location}: not a run folder (no leaderboard.csv) nor a tune.final model folder (no "
                    "report.json and model.json)")


def write_report(location: str, final: str | None = None, out: str | None = None) -> str:
    """Write the page (FOLDER/report.html, or `out`); returns where."""
    folder, page = report_of(location, final)
    if out:
        from pathlib import Path

        Path(out).write_text(page, encoding="utf-8")
        return out
    return folder.write(REPORT, page.encode())


def write_run_report(store: Any) -> str:
    """The search's page, written through its RunStore (tune/results/storage.py) like every other result file."""
    _, page = report_of(store.location)
    return store.write_bytes(REPORT, page.encode())


def write_final_report(config: Any, out: Any) -> str:
    """tune.final's page: the run folder's report.html, now with the final model `out`, when the config came from
    a run folder (its best_config.json); else report.html of the model folder alone."""
    from pathlib import Path

    run_folder = str(Path(config).resolve().parent)
    if is_run_folder(Folder(run_folder)):
        return write_report(run_folder, final=str(out))
    return write_report(str(out))
