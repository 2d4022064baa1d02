"""`python -m tune.run --space NAME`: the cross-validated search, end to end (tune/engine/experiment.py)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from tune.engine.arguments import build_parser

    build_parser().parse_args(argv)  # --help and malformed flags answer here, before the heavy imports
    from tune.engine.experiment import main as run_experiment  # torch, Ray and Optuna load only when work starts

    return run_experiment(argv)


if __name__ == "__main__":
    from tune.engine.cluster import exit_process  # a search's exit without seconds of module teardown

    exit_process(main())
