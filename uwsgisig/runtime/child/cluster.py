"""The cluster agent: the process that speaks to the cluster's Redis for its master.

The master starts it (``python -m uwsgisig.runtime.child.cluster FD NAME NODE``,
the URL in ``UWSGISIG_CLUSTER_URL``, out of ``ps``) and restarts it if it dies,
so no network call ever blocks the master. Over the socket ``FD`` the master
sends the signals to raise on the cluster and the signals it has handlers
for; the agent sends back the cluster's signals to run here, the members, and
its log lines.

Two threads: the *reader* waits on the cluster's stream and hands each entry
to the master, from where it last read (so a node cut off for a while runs
what was raised meanwhile, unless the stream was trimmed past it, which it
logs); the main thread takes the master's messages, raises signals (retried
for about a second and a half, then logged as failed), and announces the node
every `HEARTBEAT`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

from ..ipc.posix import die_with_parent
from ..model.cluster import (
    HEARTBEAT,
    MEMBER_TTL,
    STREAM_LENGTH,
    URL_ENV,
    ClusterSpec,
    decode,
    encode,
    lease_ttl,
)

PUBLISH_TRIES = 3
READ_BLOCK_MS = 1000


class Agent:
    """One node's link to its cluster."""

    def __init__(self, sock: socket.socket, spec: ClusterSpec, node: str, client: Any) -> None:
        self.sock = sock
        self.spec = spec
        self.node = node
        self.client = client
        self.handlers: set[int] = set()
        self._away_since: float | None = None  # the main thread's outage, for its log
        self._members: list[dict[str, Any]] | None = None
        # Set once the reader knows where the stream is: a node is not announced before,
        # so that whoever sees it as a member knows it gets the signals raised from then.
        self.reading = threading.Event()

    # ------------------------------------------------------------ to the master

    def tell(self, **message: Any) -> None:
        """Send one message to the master."""
        self.sock.send(encode(message))

    def log(self, level: str, text: str) -> None:
        """A line for the master's log."""
        self.tell(log=level, text=text)

    # ------------------------------------------------------------ the main thread

    def serve(self) -> int:
        """Take the master's messages and announce this node until the master goes."""
        next_beat = 0.0
        while True:
            readable, _, _ = select.select(
                [self.sock], [], [], max(next_beat - time.monotonic(), 0)
            )
            if readable:
                packet = self.sock.recv(65536)
                if not packet:
                    return 0  # the master is gone
                self.on_message(decode(packet))
            if not self.reading.is_set():
                next_beat = time.monotonic() + 0.05
            elif time.monotonic() >= next_beat:
                self.heartbeat()
                next_beat = time.monotonic() + HEARTBEAT

    def on_message(self, message: dict[str, Any]) -> None:
        if "publish" in message:
            self.publish(int(message["publish"]), str(message.get("scope", "cluster")))
        elif "lease" in message:
            if time.time() - float(message.get("at", 0.0)) > max(float(message["length"]), 1.0):
                # Asked of an agent that has died since: the tick is past, not to run late.
                self.tell(lost=int(message["lease"]))
                return
            self.lease(int(message["lease"]), float(message["length"]), int(message["slot"]))
        elif "signals" in message:
            self.handlers = {int(num) for num in message["signals"]}

    def publish(self, num: int, scope: str) -> None:
        """Raise signal ``num`` on the cluster: an entry of its stream."""
        error: Exception | None = None
        for attempt in range(PUBLISH_TRIES):
            try:
                self.client.xadd(
                    self.spec.stream,
                    {"num": num, "scope": scope, "from": self.node},
                    maxlen=STREAM_LENGTH,
                    approximate=True,
                )
                return
            except Exception as exc:  # redis-py's errors, and OSError
                error = exc
                time.sleep(0.25 * 2**attempt)
        self.log(
            "error",
            f"signal {num} was not raised on the cluster: {self.spec.redacted_url()} "
            f"failed {PUBLISH_TRIES} times ({error})",
        )
        self.tell(failed=num)

    def lease(self, signum: int, length: float, slot: int) -> None:
        """Take the lease on a unique schedule's tick; tell the master if it is ours."""
        try:
            won = self.client.set(
                self.spec.lease_key(signum, length, slot),
                self.node,
                nx=True,
                px=int(lease_ttl(length) * 1000),
            )
        except Exception as exc:
            self.log(
                "error",
                f"signal {signum}'s unique tick {slot} fired on no node from here: "
                f"{self.spec.redacted_url()} failed ({exc})",
            )
            self.tell(lease_failed=signum)
            return
        if won:
            self.tell(won=signum)
        else:
            self.tell(lost=signum)

    def heartbeat(self) -> None:
        """Say this node is alive, and tell the master who else is."""
        me = {"node": self.node, "pid": os.getppid(), "signals": sorted(self.handlers)}
        try:
            self.client.set(
                self.spec.member_key(self.node), json.dumps(me), px=int(MEMBER_TTL * 1000)
            )
            members = self.members()
        except Exception as exc:
            if self._away_since is None:
                self._away_since = time.monotonic()
                self.log("warning", f"lost the cluster at {self.spec.redacted_url()}: {exc}")
            return
        if self._away_since is not None:
            away = time.monotonic() - self._away_since
            self._away_since = None
            self.log("info", f"back on the cluster after {away:.1f} s")
        if members != self._members:
            self._members = members
            self.tell(members=members)

    def members(self) -> list[dict[str, Any]]:
        """The live nodes, by name."""
        keys = sorted(self.client.scan_iter(match=self.spec.member_key("*"), count=1000))
        found = []
        for value in self.client.mget(keys) if keys else []:
            if value is not None:
                found.append(json.loads(value))
        return sorted(found, key=lambda member: member["node"])

    # ------------------------------------------------------------ the reader

    def read(self) -> None:
        """Hand the master every signal of the stream, from the newest one at start on."""
        last = self._newest_id()
        self.reading.set()
        away_since = None
        while True:
            try:
                entries = self.client.xread(
                    {self.spec.stream: last}, count=100, block=READ_BLOCK_MS
                )
            except Exception as exc:
                if away_since is None:
                    away_since = time.monotonic()
                    self.log("warning", f"cannot read the cluster's signals: {exc}")
                time.sleep(0.5)
                continue
            if away_since is not None:
                self._after_outage(last, time.monotonic() - away_since)
                away_since = None
            for _, items in entries or ():
                for entry_id, fields in items:
                    last = entry_id
                    self.deliver(fields)

    def deliver(self, fields: dict[bytes, bytes]) -> None:
        num = int(fields[b"num"])
        scope = fields.get(b"scope", b"cluster").decode()
        if scope == "subscribed" and num not in self.handlers:
            return
        self.tell(**{"raise": num, "scope": scope, "from": fields.get(b"from", b"").decode()})

    def _newest_id(self) -> bytes | str:
        said = False
        while True:
            try:
                newest = self.client.xrevrange(self.spec.stream, count=1)
                return newest[0][0] if newest else "0-0"
            except Exception as exc:
                if not said:  # once: this node stays out of the cluster until it can read
                    said = True
                    self.log(
                        "error",
                        f"cannot reach the cluster at {self.spec.redacted_url()}: {exc} "
                        "(retrying every second)",
                    )
                time.sleep(1.0)

    def _after_outage(self, last: bytes | str, away: float) -> None:
        lost = ""
        try:
            first = self.client.xinfo_stream(self.spec.stream).get("first-entry")
            if first is not None and _id_after(first[0], last):
                lost = ": some signals raised meanwhile were trimmed from the stream, and are lost"
        except Exception:
            pass
        self.log(
            "info" if not lost else "error",
            f"reading the cluster's signals again after {away:.1f} s{lost}",
        )


def _id_after(entry: bytes | str, last: bytes | str) -> bool:
    """Whether stream id ``entry`` comes more than one entry after ``last``."""

    def parts(value: bytes | str) -> tuple[int, int]:
        text = value.decode() if isinstance(value, bytes) else value
        ms, _, seq = text.partition("-")
        return int(ms), int(seq or 0)

    return parts(entry) > parts(last) and last not in ("0-0", b"0-0")


def main(argv: list[str]) -> int:
    """``agent FD NAME NODE``: serve the master on socket FD until it goes."""
    fd, name, node = argv
    die_with_parent(signal.SIGTERM)
    if os.getppid() == 1:
        return 0  # the master died before we could ask to go with it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the runtime's reload is not for us
    sock = socket.socket(fileno=int(fd))
    spec = ClusterSpec(os.environ[URL_ENV], name)
    try:
        import redis
    except ImportError:
        sock.send(
            encode(
                {
                    "log": "error",
                    "text": "--cluster needs the redis client: pip install 'uwsgisig[cluster]'",
                }
            )
        )
        return 3
    client = redis.Redis.from_url(spec.url, socket_connect_timeout=2.0, socket_timeout=5.0)
    agent = Agent(sock, spec, node, client)
    threading.Thread(target=agent.read, name="cluster-reader", daemon=True).start()
    return agent.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
