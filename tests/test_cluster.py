"""The cluster, on a real Redis server: three runtimes on this machine are three nodes."""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import App, children_of, wait_for
from tests.redis_server import RedisServer
from tests.test_cli import run as run_cli
from tests.test_stats import read_stats
from uwsgisig import Runtime

pytestmark = pytest.mark.timeout(120)

NODES = ("n1", "n2", "n3")

CLUSTER_APP = """
NODE = {node!r}

@Signal(5).register_handler(target="cluster")
def everywhere(num):
    record("ran", num, NODE)

@Signal(6).register_handler(target="cluster")
def barrier(num):
    record("ran", num, NODE)
"""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cluster_stats(tmp_path: Path, node: str) -> dict:
    return read_stats(tmp_path / f"{node}.stats")["cluster"]


def start_nodes(
    start_app: Callable[..., App],
    tmp_path: Path,
    url: str,
    source: str = CLUSTER_APP,
    nodes: tuple[str, ...] = NODES,
    **options: object,
) -> dict[str, App]:
    """Start a runtime per node, and wait until each sees all of them as members."""
    options.setdefault("workers", 1)
    apps = {
        node: start_app(
            source.format(node=node),
            cluster=url,
            cluster_node=node,
            log_file=tmp_path / f"{node}.log",
            stats=tmp_path / f"{node}.stats",
            **options,
        )
        for node in nodes
    }
    for node in nodes:
        wait_for(
            lambda node=node: (
                f"{len(nodes)} node(s): {', '.join(sorted(nodes))}"
                in (tmp_path / f"{node}.log").read_text()
            ),
            20,
            f"node {node} to see every node",
        )
    return apps


def ran(app: App, num: int) -> collections.Counter[str]:
    """How many times each node ran signal ``num`` (``ran NUM NODE`` records)."""
    return collections.Counter(words[2] for words in app.records("ran") if words[1] == str(num))


def test_a_cluster_signal_runs_once_on_each_node(start_app, tmp_path, redis_server):
    apps = start_nodes(start_app, tmp_path, redis_server.url)
    first = apps["n1"]
    first.handle.signal(5)
    apps["n2"].handle.signal(5)  # from another node too
    first.handle.signal(6)  # after both, on every node's stream
    wait_for(lambda: ran(first, 6) == {node: 1 for node in NODES}, 20, "signal 6 on every node")
    assert ran(first, 5) == {node: 2 for node in NODES}  # each raise once on each node
    # It runs in a worker of each node (``worker``: a cluster target runs there).
    assert {words[-2] for words in first.records("ran")} == {"worker1"}
    stats = cluster_stats(tmp_path, "n1")
    assert [member["node"] for member in stats["members"]] == list(NODES)
    assert stats["node"] == "n1"
    assert (stats["published"], stats["received"], stats["failed"]) == (2, 3, 0)


def test_subscribed_reaches_only_the_nodes_with_a_handler(start_app, tmp_path, redis_server):
    source = """
NODE = {node!r}

if NODE != "n3":
    @Signal(7).register_handler(target="subscribed")
    def some(num):
        record("ran", num, NODE)

@Signal(6).register_handler(target="cluster")
def barrier(num):
    record("ran", num, NODE)
"""
    apps = start_nodes(start_app, tmp_path, redis_server.url, source)
    apps["n1"].handle.signal(7)
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {n: 1 for n in NODES}, 20, "signal 6 everywhere")
    assert ran(apps["n1"], 7) == {"n1": 1, "n2": 1}
    assert "no handler" not in (tmp_path / "n3.log").read_text()


def test_a_node_without_a_handler_says_so_once(start_app, tmp_path, redis_server):
    source = """
NODE = {node!r}

if NODE == "n1":
    @Signal(8).register_handler(target="cluster")
    def mine(num):
        record("ran", num, NODE)

@Signal(6).register_handler(target="cluster")
def barrier(num):
    record("ran", num, NODE)
"""
    apps = start_nodes(start_app, tmp_path, redis_server.url, source, nodes=("n1", "n2"))
    for _ in range(3):
        apps["n1"].handle.signal(8)
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 everywhere")
    assert ran(apps["n1"], 8) == {"n1": 3}
    said = (tmp_path / "n2.log").read_text()
    assert said.count("signal 8 came from the cluster, but this node has no handler") == 1


def test_a_dead_node_leaves_the_members(start_app, tmp_path, redis_server):
    apps = start_nodes(start_app, tmp_path, redis_server.url)
    doomed = apps["n3"]
    pids = {doomed.handle.pid, *children_of(doomed.handle.pid)}
    doomed.seen_pids |= pids
    os.kill(doomed.handle.pid, signal.SIGKILL)  # the master; its children go with it
    wait_for(lambda: "2 node(s): n1, n2" in (tmp_path / "n1.log").read_text(), 20, "n3 to expire")
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 on the living")


def test_a_killed_agent_is_restarted_and_the_node_goes_on(start_app, tmp_path, redis_server):
    apps = start_nodes(start_app, tmp_path, redis_server.url, nodes=("n1", "n2"))
    log = tmp_path / "n2.log"
    agent = cluster_stats(tmp_path, "n2")["agent_pid"]
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: log.read_text().count("started cluster agent") == 2, 20, "a new agent")
    wait_for(
        lambda: cluster_stats(tmp_path, "n2")["agent_pid"] not in (None, agent),
        20,
        "the new agent's pid",
    )
    # The new agent announces the node again once it reads the stream.
    wait_for(lambda: log.read_text().count("2 node(s): n1, n2") == 2, 20, "n2 back")
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 everywhere")


def test_raising_while_the_server_is_down_fails_loudly_then_works_again(
    start_app, tmp_path, redis_server
):
    apps = start_nodes(start_app, tmp_path, redis_server.url, nodes=("n1", "n2"))
    redis_server.stop()
    apps["n1"].handle.signal(5)
    log = tmp_path / "n1.log"
    wait_for(lambda: "signal 5 was not raised on the cluster" in log.read_text(), 20, "the failure")
    assert cluster_stats(tmp_path, "n1")["failed"] == 1
    redis_server.start()  # on the same port
    wait_for(lambda: "back on the cluster" in log.read_text(), 20, "n1 back")
    wait_for(lambda: "back on the cluster" in (tmp_path / "n2.log").read_text(), 20, "n2 back")
    wait_for(
        lambda: "reading the cluster's signals again" in (tmp_path / "n2.log").read_text(),
        20,
        "n2's reader back",
    )
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 everywhere")
    assert ran(apps["n1"], 5) == {}  # the failed one is not run late


def test_a_cluster_target_needs_a_cluster(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "from uwsgisig import Signal\nSignal(5).register_handler(target='cluster')(print)\n"
    )
    result = run_cli("run", str(app))
    assert result.returncode == 2
    assert "signal 5 targets 'cluster', which names no process" in result.stderr
    assert "no cluster)" in result.stderr


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"cluster": "http://127.0.0.1:6379"}, "invalid cluster 'http://127.0.0.1:6379'"),
        ({"cluster": "redis://127.0.0.1", "cluster_name": "a:b"}, "invalid cluster name 'a:b'"),
    ],
)
def test_a_bad_cluster_option_is_refused_by_name(tmp_path, options, error):
    app = tmp_path / "app.py"
    app.write_text("")
    with pytest.raises(ValueError, match=error):
        Runtime(str(app), workers=1, **options)


UNIQUE_TIMER_APP = """
import time
from uwsgisig import scheduling

NODE = {node!r}

@scheduling.register_timer(1, unique=True)
def tick(num):
    record("tick", NODE, num)
"""


def ticks(app: App) -> list[str]:
    """The node of each tick, in order."""
    return [words[1] for words in app.records("tick")]


def test_a_unique_timer_ticks_once_per_period_even_when_the_last_ticker_dies(
    start_app, tmp_path, redis_server
):
    apps = start_nodes(start_app, tmp_path, redis_server.url, UNIQUE_TIMER_APP)
    first = apps["n1"]
    seen = wait_for(lambda: len(ticks(first)) >= 5 and ticks(first), 30, "5 ticks")
    dead = seen[-1]  # the node that ticked last
    doomed = apps[dead]
    doomed.seen_pids |= {doomed.handle.pid, *children_of(doomed.handle.pid)}
    os.kill(doomed.handle.pid, signal.SIGKILL)
    before = len(ticks(first))
    wait_for(lambda: len(ticks(first)) >= before + 5, 30, "5 ticks after the kill")
    living = [node for node in NODES if node != dead]
    # Each living node ran exactly the ticks whose lease it won.
    for node in living:
        wait_for(
            lambda node=node: (
                ticks(first).count(node) == cluster_stats(tmp_path, node)["unique_ticks"]["won"]
            ),
            20,
            f"{node}'s runs to match its leases",
        )
    # One lease per period, each to one node: no period missed but the one the
    # killed node may have leased before it died.
    num = first.records("tick")[0][2]  # the signal the timer took: the same on every node
    client = redis_server.client()
    leases = {
        int(key.rsplit(b":", 1)[1]): client.get(key).decode()
        for key in client.scan_iter(match=f"uwsgisig:uwsgisig:once:{num}:1:*")
    }
    periods = sorted(leases)
    assert len(set(range(periods[0], periods[-1] + 1)) - set(periods)) <= 1, periods
    assert sum(node in living for node in leases.values()) >= 5
    assert ticks(first).count(dead) <= list(leases.values()).count(dead)


UNIQUE_CRON_APP = """
import time
from uwsgisig import scheduling

NODE = {node!r}

@scheduling.register_cron("* * * * *", unique=True)
def minutely(num):
    record("minute", NODE, repr(time.time()), num)
"""


def test_a_unique_cron_minute_fires_on_one_node(start_app, tmp_path, redis_server):
    apps = start_nodes(start_app, tmp_path, redis_server.url, UNIQUE_CRON_APP)
    first = apps["n1"]

    def tried_everywhere() -> bool:
        return all(
            sum(cluster_stats(tmp_path, node)["unique_ticks"].values()) >= 1 for node in NODES
        )

    wait_for(tried_everywhere, 75, "every node to try the next minute's lease")
    fired = first.records("minute")
    assert len(fired) == 1, fired
    won = [cluster_stats(tmp_path, node)["unique_ticks"]["won"] for node in NODES]
    assert sorted(won) == [0, 0, 1]
    assert NODES[won.index(1)] == fired[0][1]


def test_a_unique_schedule_needs_a_cluster(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "from uwsgisig import scheduling\nscheduling.register_timer(1, unique=True)(print)\n"
    )
    result = run_cli("run", str(app))
    assert result.returncode == 2
    assert "timer is unique (once per cluster), but this runtime is in no cluster" in (
        result.stderr
    )


def test_a_cluster_behind_auth_takes_the_password_from_the_url(start_app, tmp_path):
    server = RedisServer(tmp_path, password="s3cret")
    server.start()
    try:
        apps = start_nodes(start_app, tmp_path, server.url, nodes=("n1", "n2"))
        apps["n1"].handle.signal(6)
        wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 everywhere")
        stats = cluster_stats(tmp_path, "n1")
        assert stats["url"] == f"redis://:***@127.0.0.1:{server.port}/0"
        assert "s3cret" not in (tmp_path / "n1.log").read_text()
        wrong = start_app(
            CLUSTER_APP.format(node="n3"),
            workers=1,
            cluster=server.url.replace("s3cret", "wrong"),
            cluster_node="n3",
            log_file=tmp_path / "n3.log",
        )
        wait_for(
            lambda: "cannot reach the cluster" in (tmp_path / "n3.log").read_text(),
            20,
            "n3 to say why it is out",
        )
        assert "wrong" not in (tmp_path / "n3.log").read_text()
        assert wrong.handle.pid  # the node runs on, out of the cluster
        assert [m["node"] for m in cluster_stats(tmp_path, "n1")["members"]] == ["n1", "n2"]
    finally:
        server.stop()


def test_a_node_cut_off_for_a_while_runs_what_was_raised_meanwhile(
    start_app, tmp_path, redis_server
):
    apps = start_nodes(start_app, tmp_path, redis_server.url, nodes=("n1", "n2"))
    client = redis_server.client()
    # Every node loses its connections; a signal is raised before they are back.
    client.client_kill_filter(_type="normal", skipme=True)
    client.xadd("uwsgisig:uwsgisig:signals", {"num": 6, "scope": "cluster", "from": "test"})
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 on both nodes")
    for node in ("n1", "n2"):
        wait_for(
            lambda node=node: (
                "reading the cluster's signals again after"
                in (tmp_path / f"{node}.log").read_text()
            ),
            20,
            f"{node} to say it was away",
        )
    apps["n1"].handle.signal(5)
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 2, "n2": 2}, 20, "the next signal 6")
    assert ran(apps["n1"], 5) == {"n1": 1, "n2": 1}  # once each, not again


UNIQUE_MONITOR_APP = """
from uwsgisig.monitoring import register_file_monitor

NODE = {node!r}

@register_file_monitor({path!r}, unique=True)
def changed(num):
    record("changed", NODE, num)
"""


def test_a_unique_file_monitor_runs_once_per_change_of_a_shared_file(
    start_app, tmp_path, redis_server
):
    shared = tmp_path / "shared"  # every node sees it: a shared file system
    shared.mkdir()
    source = UNIQUE_MONITOR_APP.replace("{path!r}", repr(str(shared)))
    apps = start_nodes(start_app, tmp_path, redis_server.url, source, nodes=("n1", "n2"))

    def leased(count: int) -> bool:
        return all(
            sum(cluster_stats(tmp_path, node)["unique_ticks"].values()) >= count
            for node in ("n1", "n2")
        )

    for change in (1, 2):
        new = tmp_path / f"release-{change}"
        new.write_text(f"release {change}")
        os.rename(new, shared / new.name)  # one change, as a deploy makes it
        wait_for(lambda change=change: leased(change), 20, f"both nodes to see change {change}")
        assert len(apps["n1"].records("changed")) == change


def test_send_with_cluster_true_runs_a_local_target_on_every_node(
    start_app, tmp_path, redis_server
):
    source = """
NODE = {node!r}

@Signal(11).register_handler(target="workers")
def everywhere(num):
    record("ran", num, NODE)

@Signal(12).register_handler(target="worker1")
def go(num):
    Signal(11).send(cluster=True)

@Signal(6).register_handler(target="cluster")
def barrier(num):
    record("ran", num, NODE)
"""
    apps = start_nodes(start_app, tmp_path, redis_server.url, source, nodes=("n1", "n2"), workers=2)
    apps["n1"].handle.signal(12)
    apps["n1"].handle.signal(6)
    wait_for(lambda: ran(apps["n1"], 6) == {"n1": 1, "n2": 1}, 20, "signal 6 everywhere")
    wait_for(lambda: ran(apps["n1"], 11) == {"n1": 2, "n2": 2}, 20, "11 in every worker")
    workers = {(words[2], words[-2]) for words in apps["n1"].records("ran") if words[1] == "11"}
    assert workers == {(n, w) for n in ("n1", "n2") for w in ("worker1", "worker2")}


def test_send_with_cluster_true_needs_a_cluster(start_app):
    app = start_app(
        """
@Signal(12).register_handler(target="worker1")
def go(num):
    try:
        Signal(11).send(cluster=True)
    except uwsgisig.NotInClusterError as exc:
        record("refused", str(exc).replace(" ", "_"))
""",
        workers=1,
    )
    app.handle.signal(12)
    [words] = app.wait_records("refused", 1)
    assert words[1].startswith(
        "cannot_raise_signal_11_on_the_cluster:_this_runtime_is_in_no_cluster"
    )
