"""The ASGI wrapper's lifespan, driven as a server drives it (no server, no runtime)."""

from __future__ import annotations

import asyncio

import pytest

from uwsgisig import AttachRefusedError, asgi

pytestmark = pytest.mark.timeout(30)


def run_lifespan(app, messages: list[dict]) -> list[dict]:
    """Feed ``messages`` to ``app``'s lifespan; return what it sent."""
    sent: list[dict] = []

    async def drive() -> None:
        inbox: asyncio.Queue[dict] = asyncio.Queue()
        for message in messages:
            inbox.put_nowait(message)

        async def send(message: dict) -> None:
            sent.append(message)

        await asyncio.wait_for(app({"type": "lifespan"}, inbox.get, send), 10)

    asyncio.run(drive())
    return sent


STARTUP_SHUTDOWN = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


async def http_only(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("no lifespan here")  # as Django's ASGIHandler does
    await send({"type": "http.response.start", "status": 204, "headers": []})


async def with_lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete", "by": "app"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete", "by": "app"})
            return


def test_an_app_with_no_lifespan_gets_one_from_the_wrapper(monkeypatch):
    monkeypatch.delenv("UWSGISIG_ATTACH", raising=False)
    sent = run_lifespan(asgi.attached(http_only), STARTUP_SHUTDOWN)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_an_app_with_its_own_lifespan_sees_every_message(monkeypatch):
    monkeypatch.delenv("UWSGISIG_ATTACH", raising=False)
    sent = run_lifespan(asgi.attached(with_lifespan), STARTUP_SHUTDOWN)
    assert sent == [
        {"type": "lifespan.startup.complete", "by": "app"},
        {"type": "lifespan.shutdown.complete", "by": "app"},
    ]


@pytest.mark.parametrize("inner", [http_only, with_lifespan], ids=["no-lifespan", "lifespan"])
def test_a_refused_attach_fails_the_startup_with_the_reason(monkeypatch, inner):
    def refuse(loop):
        raise AttachRefusedError("signal 40 differs")

    monkeypatch.setattr(asgi, "_attach_on", refuse)
    sent = run_lifespan(asgi.attached(inner), STARTUP_SHUTDOWN)
    assert sent[-1] == {"type": "lifespan.startup.failed", "message": "signal 40 differs"}
    assert {"type": "lifespan.startup.complete", "by": "app"} not in sent


def test_requests_pass_through_untouched():
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    asyncio.run(asgi.attached(http_only)({"type": "http"}, receive, send))
    assert sent == [{"type": "http.response.start", "status": 204, "headers": []}]
