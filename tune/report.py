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
from tune.results.page import REPORT, report_of, write_report

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


def run(args: argparse.Namespace) -> int:
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
