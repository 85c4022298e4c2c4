"""The same app, written against uwsgisig's API, under a real uWSGI and under ``uwsgisig run``.

Both servers run 2 workers, mules 1 and 2, farm ``pool`` of both mules and a
spooler. The test raises every target's signal from outside (as remote
signals), lets the app raise, offload and tick from inside, and compares
which processes ran what.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.servers import (
    APPS,
    Server,
    start_uwsgi,
    start_uwsgisig,
    uwsgi_ports,
    uwsgisig_remote_address,
)
from uwsgisig import lowlevel

APP = APPS / "both_servers.py"
SIGNALS = range(10, 24)  # the targets' signals in the app
PROCESSES = {"worker1", "worker2", "mule1", "mule2", "spooler"}

# Where each handler ran. "worker" means one worker, either; "mule" one mule, either.
EXPECTED = {
    "worker": ["worker"],
    "worker1": ["worker1"],
    "worker2": ["worker2"],
    "workers": ["worker1", "worker2"],
    "active-workers": ["worker1", "worker2"],
    "mule": ["mule"],
    "mule1": ["mule1"],
    "mule2": ["mule2"],
    "mules": ["mule1", "mule2"],
    "farm_pool": ["mule"],
    "farm1": ["mule"],
    "spooler": ["spooler"],
    "Mule(2)": ["mule2"],
    "Farm(pool)": ["mule"],
    "from-worker": ["mule1", "mule2"],
    "offload-mule1:a": ["mule1"],
    "offload-pool:b": ["mule"],
    "timer": ["worker1", "worker2"],
}
ANY_ONE = {"worker", "mule", "farm_pool", "farm1", "Farm(pool)", "offload-pool:b"}


def read_records(out: Path) -> list[list[str]]:
    if not out.exists():
        return []
    return [line.split() for line in out.read_text().splitlines()]


def run_targets(server: Server, address: str, out: Path) -> dict[str, list[str]]:
    """Wait until every process is ready, raise every signal, return who ran what."""
    wait_for(
        lambda: {words[1] for words in read_records(out) if words[0] == "ready"} >= PROCESSES,
        20,
        f"every process of {server.process.args[0]} to be ready",
    )
    for num in SIGNALS:
        lowlevel.signal(num, remote=address)
    expected_count = sum(len(ran_by) for ran_by in EXPECTED.values())

    def handled() -> list[list[str]] | None:
        records = [words for words in read_records(out) if words[0] != "ready"]
        return records if len(records) >= expected_count else None

    records = wait_for(handled, 20, f"{expected_count} handler runs in {out}")
    server.pids.update(int(words[-1]) for words in read_records(out))
    table: dict[str, list[str]] = defaultdict(list)
    for what, who, _pid in records:  # type: ignore[union-attr]
        if what in ANY_ONE:
            assert who in {"worker1", "worker2", "mule1", "mule2"}, (what, who)
            who = who.rstrip("12")
        table[what].append(who)
    return {what: sorted(ran_by) for what, ran_by in table.items()}


def table_of(server_name: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run the app on ``server_name`` ("uwsgi" or "uwsgisig"); return who ran what."""
    workdir = tmp_path / server_name
    spool = workdir / "spool"
    spool.mkdir(parents=True)
    out = workdir / "out.txt"
    env = {"UWSGISIG_TEST_OUT": str(out)}
    farm_and_spooler = ["--farm", "pool:1,2", "--spooler", str(spool)]
    if server_name == "uwsgi":
        args = ["--processes", "2", "--mule", "--mule", *farm_and_spooler]
        server = start_uwsgi(APP, workdir, [*args, "--socket", "127.0.0.1:0"], env)
    else:
        args = ["--workers", "2", "--mules", "2", *farm_and_spooler]
        server = start_uwsgisig(APP, workdir, [*args, "--remote-signals", "127.0.0.1:0"], env)
    try:
        if server_name == "uwsgi":
            (port,) = uwsgi_ports(server, 1)
            address = f"127.0.0.1:{port}"
        else:
            address = uwsgisig_remote_address(server)
        return run_targets(server, address, out)
    finally:
        server.stop()


@pytest.mark.timeout(90)
def test_every_target_runs_in_the_same_processes_on_both_servers(tmp_path):
    uwsgi_table = table_of("uwsgi", tmp_path)
    uwsgisig_table = table_of("uwsgisig", tmp_path)
    assert uwsgi_table == uwsgisig_table
    assert uwsgisig_table == EXPECTED


@pytest.mark.timeout(60)
def test_messages_mule_loops_the_spooler_and_refusals_under_uwsgi(tmp_path):
    (tmp_path / "spool").mkdir()
    out = tmp_path / "out.txt"
    server = start_uwsgi(
        APPS / "uwsgi_extras.py",
        tmp_path,
        [
            "--processes",
            "1",
            "--mule",
            "--mule",
            "--mule",
            "--socket",
            "127.0.0.1:0",
            "--spooler",
            str(tmp_path / "spool"),
        ],
        {"UWSGISIG_TEST_OUT": str(out)},
    )
    try:

        def outcomes() -> set[tuple[str, ...]] | None:
            found = {tuple(words[:-1]) for words in read_records(out)}
            loops = [words for words in read_records(out) if words[0] == "loop"]
            return found if len(found) >= 9 and len(loops) >= 2 else None

        found = wait_for(outcomes, 30, f"the app's outcomes in {out}")
        server.pids.update(int(words[-1]) for words in read_records(out))
    finally:
        server.stop()
    assert found == {
        ("half-second-timer", "NotImplementedError", "master"),
        ("crontab-list", "NotImplementedError", "master"),
        ("crontab-step", "accepted", "master"),
        ("bad-target", "TargetError", "master"),
        ("twice", "SignalAlreadyRegisteredError", "master"),
        ("message", "hello", "mule1"),
        ("loop", "mule3"),  # twice at least: the loop returned and uWSGI restarted it
        ("job", "j1", "payload", "str", "spooler"),
        ("wait-timeout", "NotImplementedError", "worker1"),
    }
