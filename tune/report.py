"""`python -m tune.report runs/NAME`: the run folder as one self-contained HTML page, `report.html` in it.

The page holds the leaderboard (leaderboard.csv), the winner and its validated recipe (best_config.json), the
search's figures (plots/*.png, embedded), the winner's out-of-fold report (report.json) and, when the folder has
a final model (tune.final's --out; `final/` by default, or --final DIR), its held-out test report and figures.
FOLDER may also be a model folder of tune.final alone. The search and tune.final write this page when they end;
run this to redraw it (e.g. after a tune.final with another --out). Nothing is shown on screen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.command_line import ArgumentParser, check_output_folder, run_command
from core.errors import UserError
from core.settings_files import excerpt
from tune.results.page import PLOTS, REPORT, Folder, report_of, write_report
from tune.results.storage import ExperimentInUse, RunStore, is_uri

EXAMPLES = """examples:
  python -m tune.report runs/demo
  python -m tune.report runs/NAME --final models/v1 --out /tmp/NAME.html
  python -m tune.report s3://bucket/audiotune/NAME
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tune.report", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="FOLDER", help="run folder (--storage/--name of tune.run; a path or a "
                                                    "storage URI) or a tune.final model folder")
    p.add_argument("--final", metavar="DIR", help="the final model folder (tune.final --out) when it is not "
                                                  "FOLDER/final")
    p.add_argument("--out", metavar="HTML", help=f"write the page here instead of FOLDER/{REPORT}")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (FOLDER/report.html, the command's own page, is always "
                        "redrawn)")
    return p


def check_out(out: str, overwrite: bool) -> None:
    """--out is a file this command may write: not a folder, not someone's file unless --overwrite, in a folder
    that can be made and written. Checked before the page is drawn."""
    path = Path(out)
    if path.is_dir():
        raise UserError(f"--out {out}: is a folder; give the page's file name (e.g. {path / REPORT})")
    if path.exists() and not overwrite:
        raise UserError(f"--out {out}: already exists; pass --overwrite to replace it, or another --out")
    check_output_folder(path.parent, "--out", [], overwrite)


# What the page reads, by file: the JSON type of the file, and of the keys whose values it walks.
SHAPES: dict[str, tuple[type, dict[str, type]]] = {
    "best_config.json": (dict, {"validated": dict, "params": dict, "search": dict, "config": dict}),
    "report.json": (dict, {"metrics": dict, "per_word": dict, "per_age_band": dict, "cv_score": dict,
                           "confusion_matrix": list, "classes": list, "uar_ci": list}),
    f"{PLOTS}/skipped.json": (dict, {}),
}
KINDS = {dict: "an object", list: "a list"}


def check_not_running(location: str) -> None:
    """A run folder whose search has not written its leaderboard yet: say whether it is still running (its lock is
    held) or stopped early, instead of "not a run folder"."""
    folder = Path(location).expanduser()
    if is_uri(location) or not (folder / "run.json").is_file() or (folder / "leaderboard.csv").is_file():
        return
    try:
        RunStore(str(folder.parent), folder.name).check_free()
    except ExperimentInUse:
        raise UserError(f"{location}: the search is still running (its leaderboard.csv is written as it ends); "
                        "run tune.report again when it has finished") from None
    except UserError:  # not a name tune.run makes: not one of its run folders either
        return
    raise UserError(f"{location}: a search that stopped before writing leaderboard.csv (interrupted, or every trial "
                    f"failed to start); resume it with tune.run --name {folder.name} --storage {folder.parent} "
                    "--resume, then run tune.report")


def check_shapes(location: str) -> None:
    """Each JSON file the page reads has the shape tune.run / tune.final write (one line naming the file and key
    otherwise, not a traceback from inside the page)."""
    root = Folder(location)
    for folder in (root, Folder(f"{root.location}/final")):
        for name, (kind, keys) in SHAPES.items():
            if not folder.is_dir():
                continue
            value = folder.json(name)
            if value is None:
                continue
            where = f"{folder.location}/{name}"
            if not isinstance(value, kind):
                raise UserError(f"{where}: expected {KINDS[kind]}, got {excerpt(value)}; not a file tune.run or "
                                "tune.final wrote")
            for key, inner in keys.items():
                if value.get(key) is not None and not isinstance(value[key], inner):
                    raise UserError(f"{where}: {key!r} is {excerpt(value[key])}, not {KINDS[inner]}; not a file "
                                    "tune.run or tune.final wrote")
            for key in ("per_word", "per_age_band"):
                groups = value.get(key)
                if isinstance(groups, dict) and not all(isinstance(entry, dict) for entry in groups.values()):
                    raise UserError(f"{where}: {key!r} holds {excerpt(groups)}, not an object per group")
            if name.endswith("skipped.json") and not all(isinstance(v, str) for v in value.values()):
                raise UserError(f"{where}: expected figure names and reasons (text), got {excerpt(value)}")


def run(args: argparse.Namespace) -> int:
    check_not_running(args.folder)
    check_shapes(args.folder)
    if args.final:
        check_shapes(args.final)
    if not args.out:
        if args.overwrite:
            raise UserError("--overwrite is only read with --out (FOLDER/report.html is always redrawn)")
        print(f"wrote {write_report(args.folder, args.final)}")
        return 0
    check_out(args.out, args.overwrite)
    _, page = report_of(args.folder, args.final)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # only once the page is drawn: a refused FOLDER makes nothing
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
