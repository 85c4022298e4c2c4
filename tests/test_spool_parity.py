"""uWSGI's spool decorators (``@spool``, ``pass_arguments=True``, ``@spoolraw``,
``@spoolforever``, a priority) under ``uwsgisig run --uwsgi-compat`` and under a real uWSGI:
the decorated functions get the same jobs, and the same calls are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.servers import APPS, Server, start_uwsgi, start_uwsgisig

pytestmark = pytest.mark.timeout(120)

APP = APPS / "spool_decorators.py"
KINDS = {"plain", "with_arguments", "raw", "forever", "refused at", "refused mule message"}


def lines_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def outcomes(server: Server, out: Path) -> tuple[list[tuple[str, str]], int]:
    """Every distinct line, once each of the jobs ran (and the forever one twice)."""

    def done() -> bool:
        lines = lines_of(out)
        kinds = [line["kind"] for line in lines]
        return set(kinds) >= KINDS and kinds.count("plain") == 2 and kinds.count("forever") >= 2

    wait_for(done, 60, f"every job in {out}:\n{server.log_text()}")
    lines = lines_of(out)
    distinct = sorted({(line["kind"], json.dumps(line["value"], sort_keys=True)) for line in lines})
    return distinct, sum(line["kind"] == "forever" for line in lines)


def test_spool_decorators_give_the_same_jobs_as_under_uwsgi(tmp_path):
    results = []
    for name, start, args in [
        ("uwsgi", start_uwsgi, ["--processes", "1", "--http-socket", "127.0.0.1:0"]),
        ("uwsgisig", start_uwsgisig, ["--uwsgi-compat", "--workers", "1"]),
    ]:
        workdir = tmp_path / name
        (workdir / "spool").mkdir(parents=True)
        out = workdir / "out.txt"
        server = start(
            APP,
            workdir,
            [*args, "--spooler", str(workdir / "spool"), "--spooler-ordered",
             "--spooler-frequency", "1"],
            {"UWSGISIG_TEST_OUT": str(out)},
        )  # fmt: skip
        try:
            results.append(outcomes(server, out))
        finally:
            server.stop()
    (uwsgi_lines, uwsgi_forever), (ours, our_forever) = results
    assert ours == uwsgi_lines
    assert min(uwsgi_forever, our_forever) >= 2  # @spoolforever runs again and again
    kinds = dict(uwsgi_lines)
    assert json.loads(kinds["refused at"]).startswith("ValueError: spooler callable dictionary")
    assert json.loads(kinds["refused mule message"]) == "ValueError: no mule configured"
