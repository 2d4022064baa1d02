"""`tune.submit --follow` when the job-log stream drops while the job runs on (a loaded head closed the websocket:
`RuntimeError: WebSocket connection closed unexpectedly`, code 1006): it follows the job again, prints every log
line once, and exits with the job's own status. A real Ray head on loopback and real Ray Jobs; the client is
Ray's JobSubmissionClient, whose log stream is cut after its first chunk, as the head cut it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import AsyncIterator

import pytest
from ray.job_submission import JobSubmissionClient
from support.ray_cluster import ray_dashboard  # noqa: F401  (fixture)

from tune.submit import follow

pytestmark = pytest.mark.slow

LINES = 6
SCRIPT = ("import sys, time\n"
          f"for i in range({LINES}):\n"
          "    print(f'log line {i}', flush=True)\n"
          "    time.sleep(0.7)\n"
          "sys.exit(int(sys.argv[1]))\n")


class DroppingClient(JobSubmissionClient):
    """Ray's client, whose first `drops` log streams close after one chunk with the error seen under load."""

    def __init__(self, address: str, drops: int) -> None:
        super().__init__(address)
        self.drops = drops
        self.streams = 0

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        self.streams += 1
        async for text in super().tail_job_logs(job_id):
            yield text
            if self.streams <= self.drops:
                raise RuntimeError("WebSocket connection closed unexpectedly")


@pytest.mark.parametrize(("code", "status", "exit_code"), [(0, "SUCCEEDED", 0), (3, "FAILED", 1)])
def test_follow_survives_a_dropped_log_stream(ray_dashboard: str, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                              code: int, status: str, exit_code: int) -> None:
    client = DroppingClient(ray_dashboard, drops=2)
    job_id = client.submit_job(entrypoint=shlex.join([sys.executable, "-c", SCRIPT, str(code)]))
    assert follow(client, job_id, ray_dashboard, poll=0.3) == exit_code
    out, err = capsys.readouterr()
    assert client.streams >= 3  # dropped twice, then followed to the end
    assert "log stream dropped: WebSocket connection closed unexpectedly" in err
    assert [line for line in out.splitlines() if line.startswith("log line")] == \
        [f"log line {i}" for i in range(LINES)]  # every line, once, in order
    assert f"job {job_id}: {status}" in (out if status == "SUCCEEDED" else err)
    assert str(client.get_job_status(job_id).value) == status
