"""ASGI servers' workers as the runtime's workers (uvicorn, granian, hypercorn).

Wrap the app; each server worker attaches when the server runs the ASGI
lifespan's startup, and leaves at its shutdown::

    from uwsgisig.asgi import attached
    app = attached(app)

    uwsgisig run app.py -- uvicorn --workers 4 app:app

Plain (``def``) signal handlers run in the worker's signal thread, off the
event loop, so a slow one never stalls requests. Coroutine (``async def``)
handlers run on the worker's event loop, and the signal thread waits for
each to finish, so the worker counts as busy meanwhile (uWSGI's "first
available" sees it so). Outside a runtime the wrapper only passes the
lifespan on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import platform
from .attaching import attach, detach

__all__ = ["attached"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def attached(app: App) -> App:
    """``app``, whose server workers attach to the runtime during the ASGI lifespan."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        await _lifespan(app, scope, receive, send)

    return wrapper


class _AttachFailed(Exception):
    """Attaching failed at startup: the server is told, and the app never sees the startup."""


async def _lifespan(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    started = False

    async def receive_and_attach() -> Message:
        nonlocal started
        message = await receive()
        if message["type"] == "lifespan.startup" and not started:
            started = True
            try:
                _attach_on(asyncio.get_running_loop())
            except Exception as exc:
                raise _AttachFailed(str(exc)) from exc
        elif message["type"] == "lifespan.shutdown":
            detach()
        return message

    try:
        await app(scope, receive_and_attach, send)
    except _AttachFailed as exc:
        # A worker that cannot attach must not serve: it would raise signals nowhere.
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
    except Exception:
        if started:
            raise
        # The app has no lifespan of its own: answer the server ourselves.
        await _own_lifespan(receive, send)


async def _own_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                _attach_on(asyncio.get_running_loop())
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            detach()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _attach_on(loop: asyncio.AbstractEventLoop) -> None:
    if attach():
        platform.run_coroutines_on(loop)
