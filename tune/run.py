"""`python -m tune.run --space NAME`: the cross-validated search, end to end (tune/engine/experiment.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from tune.engine.arguments import build_parser

    args = build_parser().parse_args(argv)  # --help and malformed flags answer here, before the heavy imports
    if not args.address:  # a local Ray: token authentication (Ray's default) asked for before Ray is imported,
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # so that Ray does not warn on every run that it chose it
    from tune.engine.experiment import main as run_experiment  # torch, Ray and Optuna load only when work starts

    return run_experiment(argv)


if __name__ == "__main__":
    from tune.engine.cluster import exit_process  # a search's exit without seconds of module teardown

    exit_process(main())
