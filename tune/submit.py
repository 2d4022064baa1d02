"""`python -m tune.submit --address http://HEAD:8265 --space NAME [tune.run options]`: the search as a Ray Job.

The options are checked here first, exactly as tune.run checks them (same one-line errors, exit 2); then the code
goes up (a checkout's project root as the job's `working_dir`, or an installed package's own folders as `py_modules`,
never site-packages: tune/engine/job_env.py `upload`) and the job runs `tune.run ... --address auto` on the cluster. See
docs/cluster.md for the interpreter and requirements choices (tune/engine/job_env.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
from collections.abc import Sequence

from core.command_line import ArgumentParser
from core.errors import UserError
from tune.engine.cluster import set_ray_environment
from tune.engine.job_env import absolute_paths, demo_data, interpreter_and_env, submit

TERMINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}
EXAMPLES = """examples:
  python -m tune.submit --address http://HEAD:8265 --follow --space whisper_balancing \\
      --data /shared/clinic/manifest.csv --storage s3://bucket/audiotune --num-samples 60 --gpus-per-trial 0.5
  python -m tune.submit --address http://HEAD:8265 --space whisper_sam --data /cluster/only/manifest.csv --remote-data
"""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m tune.submit", allow_abbrev=False, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Submit a tune.run search to a Ray cluster as a Ray Job. Any option not listed here is a "
                    "tune.run option (see python -m tune.run --help) and is checked locally before submitting.")
    p.add_argument("--address", required=True, help="the cluster's Jobs API (dashboard), e.g. http://HEAD:8265")
    p.add_argument("--follow", action="store_true",
                   help="stream the job's logs until it ends; exit 0 if it SUCCEEDED, 1 if it FAILED or was STOPPED")
    p.add_argument("--python", help="interpreter the job runs (default: this one, "
                                    f"{sys.executable}, if the cluster has it with the project's packages)")
    p.add_argument("--pip", choices=("auto", "always", "never"), default="auto",
                   help="install the project's pinned requirements into a job virtualenv: auto = only when the "
                        "cluster's interpreter lacks them (checked with a tiny probe job) (default: auto)")
    p.add_argument("--remote-data", action="store_true",
                   help="the manifest and audio exist only on the cluster: skip the local data checks")
    return p


def validate(run_argv: list[str], remote_data: bool) -> None:
    """tune.run's own checks, before anything is uploaded. Imported late: they pull in torch."""
    import optuna

    from tune.engine.experiment import check_data, parse_settings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings, _, _, _ = parse_settings([*run_argv, "--address", "auto"])
    if not remote_data:
        check_data(settings)


def main(argv: Sequence[str] | None = None) -> int:
    set_ray_environment()
    logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per file uploaded
    args, run_argv = build_parser().parse_known_args(argv)
    try:
        run_argv = absolute_paths(run_argv)
        from tune.engine.arguments import BUNDLED_DEMO

        demo_env, demo_argv = demo_data(run_argv, BUNDLED_DEMO)
        validate(run_argv, args.remote_data)
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(args.address)
        python, runtime_env = interpreter_and_env(client, args.python, args.pip)
        runtime_env.update(demo_env)
        entrypoint = shlex.join([python, "-m", "tune.run", *run_argv, *demo_argv, "--address", "auto"])
        job_id = submit(client, entrypoint=entrypoint, runtime_env=runtime_env, metadata={"tool": "audiotune"})
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except (ConnectionError, RuntimeError) as error:  # unreachable dashboard, refused submission
        print(f"error: --address {args.address}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"submitted job {job_id}\n  entrypoint: {entrypoint}", flush=True)
    if not args.follow:
        print(f"follow: ray job logs --follow {job_id} --address {args.address}\n"
              f"stop:   ray job stop {job_id} --address {args.address}")
        return 0
    return follow(client, job_id, args.address)


POLL_SECONDS = 2.0  # between a dropped log stream and the next try; between status polls
STATUS_TRIES = 30  # consecutive failed status queries (a minute) before the cluster counts as lost


def follow(client: object, job_id: str, address: str, poll: float = POLL_SECONDS) -> int:
    """Print the job's log as it grows; the job's final status becomes our exit code. The log stream (a
    websocket) can drop while the job runs on (a loaded head closes it, code 1006): it is opened again, and what
    was already printed is not printed twice (each stream starts from the log's beginning), until the job is in
    a terminal state."""
    shown = 0  # characters of the log printed so far

    async def tail() -> None:
        nonlocal shown
        seen = 0
        async for text in client.tail_job_logs(job_id):  # type: ignore[attr-defined]
            fresh = text[max(0, shown - seen):]
            seen += len(text)
            if fresh:
                print(fresh, end="", flush=True)
                shown += len(fresh)

    failures = 0
    dropped = False
    while True:
        try:
            asyncio.run(tail())
        except KeyboardInterrupt:
            print(f"\nstopped following; job {job_id} keeps running (ray job stop {job_id} --address {address})",
                  file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 (websocket/HTTP errors of several libraries: the status decides)
            if not dropped:
                print(f"\n(log stream dropped: {str(error).splitlines()[0] if str(error) else type(error).__name__}; "
                      "following the job again)", file=sys.stderr, flush=True)
            dropped = True
        try:
            status = str(getattr(client.get_job_status(job_id), "value", ""))  # type: ignore[attr-defined]
            failures = 0
        except Exception as error:  # noqa: BLE001 (the dashboard may be briefly unreachable under load)
            failures += 1
            if failures >= STATUS_TRIES:
                print(f"error: --address {address}: lost the cluster while following job {job_id} ({error}); it may "
                      f"still run: ray job status {job_id} --address {address}", file=sys.stderr)
                return 1
            status = ""
        if status in TERMINAL:
            break
        time.sleep(poll)
    print(f"job {job_id}: {status}", file=sys.stderr if status != "SUCCEEDED" else sys.stdout, flush=True)
    return TERMINAL[status]


if __name__ == "__main__":
    sys.exit(main())
