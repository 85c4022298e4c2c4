"""What attaching a web server's workers to the runtime costs, measured side by side.

For a small WSGI app under gunicorn (4 sync workers) and an ASGI app under
uvicorn (4 workers), three configurations each:

- the server alone (no runtime);
- the server as ``uwsgisig run app.py -- SERVER``, its workers attached, at rest;
- the same while a mule raises 10,000 signals/s to ``workers`` (40,000 handler
  runs/s on 4 workers).

A load client (2 processes, asyncio, 16 connections each, one request per
connection) measures requests/s and p50/p99 latency. Configurations run one at a
time, interleaved round by round, and the table shows medians over rounds. A
last table gives the signal round trip raised from inside a request handler
(view -> mule -> back to the waiting view).

    python bench/bench_web.py            # 3 rounds of 4 s per configuration: about 2-3 min
    python bench/bench_web.py --quick    # 1 round of 2 s: well under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FORK, table

APP = '''
"""The benchmarked app: a view that answers "ok", and a signal round trip view."""
import os
import time

from uwsgisig import Mule, Signal
from uwsgisig.asgi import attached

RATE = int(os.environ.get("BENCH_SIGNAL_RATE", "0"))
pings = Mule(1)


@Signal(10).register_handler(target="workers")
def tick(num):
    pass


@Signal(20).register_handler(target="mule1")
def ping(num):
    Signal(21).send()  # no handler: it answers the worker waiting for it


def pace():
    """Mule 2's loop: RATE signals/s to every worker, in batches every 10 ms."""
    if not RATE:
        while True:
            time.sleep(3600)
    batch = max(1, RATE // 100)
    tick_signal = Signal(10)
    start = due = time.monotonic()
    sent = 0
    while True:
        for _ in range(batch):
            tick_signal.send()
        sent += batch
        due += batch / RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if sent % (batch * 100) == 0:  # about once a second: the rate kept so far
            with open("paced.txt", "w") as out:
                out.write(str(sent / (time.monotonic() - start)))


Mule(2, loop=pace)


def round_trips(count):
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        Signal(20).send()
        Signal(21).wait(timeout=5)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return b"%d %d" % (samples[len(samples) // 2], samples[len(samples) * 99 // 100])


def wsgi(environ, start_response):
    body = round_trips(200) if environ["PATH_INFO"] == "/rt" else b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def _asgi(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("http only")
    body = b"ok"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


asgi = attached(_asgi)
'''

PACED: list[float] = []  # the signal rates the pacing mule kept, one per loaded run
CLIENTS = 2  # load client processes
CONNECTIONS = 16  # concurrent connections per client process
START_TIMEOUT = 30.0


class Settings(NamedTuple):
    rounds: int
    seconds: float


class Load(NamedTuple):
    """One measurement: requests per second and latency percentiles in ms."""

    rate: float
    p50: float
    p99: float


# ------------------------------------------------------------------ the client


async def _one_connection(port: int, deadline: float, latencies: list[float]) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        start = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await reader.read()  # the server closes after the response
        writer.close()
        latencies.append(time.perf_counter() - start)


def _client(port: int, seconds: float, results: object) -> None:
    latencies: list[float] = []

    async def run() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(_one_connection(port, deadline, latencies) for _ in range(CONNECTIONS))
        )

    asyncio.run(run())
    results.put(latencies)  # type: ignore[attr-defined]


def load(port: int, seconds: float) -> Load:
    """Hit ``/`` from CLIENTS processes for ``seconds``."""
    results = FORK.Queue()
    clients = [FORK.Process(target=_client, args=(port, seconds, results)) for _ in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    latencies = [value for _ in clients for value in results.get(timeout=seconds + 60)]
    elapsed = time.monotonic() - started
    for client in clients:
        client.join(10)
    latencies.sort()
    return Load(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[len(latencies) * 99 // 100] * 1000,
    )


# ------------------------------------------------------------------ the servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed: pip install -e '.[test]'")
    return found


def server_argv(server: str, port: int) -> list[str]:
    if server == "gunicorn":
        return [
            command("gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}", "--no-control-socket",
            "-c", "python:uwsgisig.gunicorn", "app:wsgi",
        ]  # fmt: skip
    return [command("uvicorn"), "--workers", "4", "--port", str(port), "--log-level",
            "warning", "--no-access-log", "app:asgi"]  # fmt: skip


class Running:
    """One configuration, started: the process and its port."""

    def __init__(self, workdir: Path, server: str, attached: bool, rate: int) -> None:
        self.port = free_port()
        argv = server_argv(server, self.port)
        if attached:
            argv = [
                sys.executable, "-m", "uwsgisig", "run", "app.py", "--mules", "2",
                "--log-file", str(workdir / "runtime.log"), "--", *argv,
            ]  # fmt: skip
        env = {**os.environ, "BENCH_SIGNAL_RATE": str(rate), "PYTHONPATH": str(workdir)}
        env.pop("UWSGISIG_ATTACH", None)
        self.log = open(workdir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.workdir = workdir
        self.attached = attached
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: see {self.workdir / 'server.log'}")
            if self._answers() and (not self.attached or self._attached_count() >= 4):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start: see {self.workdir}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def _attached_count(self) -> int:
        log = self.workdir / "runtime.log"
        return log.read_text().count("attached as worker") if log.exists() else 0

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return r.read()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self.log.close()


# ------------------------------------------------------------------ measuring

CONFIGS = [
    ("gunicorn -w 4 (sync), alone", "gunicorn", False, 0),
    ("gunicorn -w 4, attached", "gunicorn", True, 0),
    ("gunicorn -w 4, attached, 10k signals/s", "gunicorn", True, 10_000),
    ("uvicorn --workers 4, alone", "uvicorn", False, 0),
    ("uvicorn --workers 4, attached", "uvicorn", True, 0),
    ("uvicorn --workers 4, attached, 10k signals/s", "uvicorn", True, 10_000),
]


def measure(settings: Settings, workdir: Path) -> tuple[dict[str, list[Load]], list[int]]:
    results: dict[str, list[Load]] = {name: [] for name, *_ in CONFIGS}
    round_trips: list[int] = []
    for _ in range(settings.rounds):
        for name, server, attached, rate in CONFIGS:
            running = Running(workdir, server, attached, rate)
            try:
                load(running.port, 0.5)  # warm-up
                results[name].append(load(running.port, settings.seconds))
                if rate:
                    PACED.append(float((workdir / "paced.txt").read_text()))
                if server == "gunicorn" and attached and not rate:
                    p50, _ = running.get("/rt").split()
                    round_trips.append(int(p50))
            finally:
                running.stop()
    return results, round_trips


def report(settings: Settings, results: dict[str, list[Load]], round_trips: list[int]) -> None:
    print(
        f"uwsgisig web benchmark: {settings.rounds} rounds of {settings.seconds:g} s per "
        f"configuration; {CLIENTS} client processes x {CONNECTIONS} connections, "
        f"one request per connection; python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print()
    rows = []
    medians: dict[str, Load] = {}
    for name, loads in results.items():
        median = Load(
            statistics.median(x.rate for x in loads),
            statistics.median(x.p50 for x in loads),
            statistics.median(x.p99 for x in loads),
        )
        medians[name] = median
        rows.append([name, f"{median.rate:,.0f}", f"{median.p50:.2f}", f"{median.p99:.2f}"])
    print(table(["configuration", "req/s", "p50 ms", "p99 ms"], rows))
    print()
    checks = []
    for server, alone_name in (
        ("gunicorn -w 4", "gunicorn -w 4 (sync), alone"),
        ("uvicorn --workers 4", "uvicorn --workers 4, alone"),
    ):
        prefix = server
        alone = medians[alone_name]
        at_rest = medians[f"{prefix}, attached"]
        busy = medians[f"{prefix}, attached, 10k signals/s"]
        checks += [
            [f"{prefix}: attached req/s / alone", f"{at_rest.rate / alone.rate:.3f}", ">= 0.95",
             "PASS" if at_rest.rate / alone.rate >= 0.95 else "MISS"],
            [f"{prefix}: attached p99 / alone", f"{at_rest.p99 / alone.p99:.3f}", "<= 1.10",
             "PASS" if at_rest.p99 / alone.p99 <= 1.10 else "MISS"],
            [f"{prefix}: 10k signals/s req/s / alone", f"{busy.rate / alone.rate:.3f}", "-", ""],
        ]  # fmt: skip
    if PACED:
        print(
            f"The pacing mule kept {min(PACED):,.0f} to {max(PACED):,.0f} signals/s to "
            "`workers` during the loaded runs (4 handler runs each)."
        )
        print()
    print("Targets (at rest; informational)")
    print(table(["check", "ratio", "target", "result"], checks))
    print()
    if round_trips:
        print(
            "Signal round trip from inside a gunicorn view (view -> mule1 -> the waiting "
            f"view), median of {len(round_trips)} runs of 200: "
            f"p50 {statistics.median(round_trips) / 1000:.1f} us"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per configuration")
    args = parser.parse_args(argv)
    settings = Settings(1, 2.0) if args.quick else Settings(3, 4.0)
    with tempfile.TemporaryDirectory(prefix="uwsgisig-bench-web-") as directory:
        workdir = Path(directory)
        (workdir / "app.py").write_text(APP)
        results, round_trips = measure(settings, workdir)
    report(settings, results, round_trips)


if __name__ == "__main__":
    main()
