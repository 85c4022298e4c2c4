"""Gunicorn's workers as the runtime's workers.

Give it to gunicorn as its config module::

    uwsgisig run app.py -- gunicorn -c python:uwsgisig.gunicorn -w 4 app:wsgi

or call the hooks from a ``gunicorn.conf.py`` of your own::

    from uwsgisig.gunicorn import post_worker_init, worker_exit

Each worker attaches once it has loaded the app (with ``--preload`` too: the
app is then imported by gunicorn's arbiter, and each worker attaches after
fork) and leaves when it exits. Signal handlers run in a thread of the
worker, beside the requests; this suits the sync and gthread workers.
Outside a runtime (no ``$UWSGISIG_ATTACH``) the hooks do nothing.

Under ``uwsgisig run --uwsgi-compat``, importing this module installs the
``uwsgi``-compatible module first, so an app written for uWSGI (``import
uwsgi``, ``uwsgidecorators``) runs in gunicorn's workers unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from . import compat
from .attaching import attach, detach

__all__ = ["post_worker_init", "worker_exit"]

if os.environ.get(compat.COMPAT_ENV):
    compat.install()  # gunicorn reads this module before it imports the app


def post_worker_init(worker: Any) -> None:
    """Gunicorn's hook, after a worker loaded the app: attach it to the runtime."""
    worker_id = attach(workers=worker.cfg.workers)
    if worker_id:
        worker.log.info("uwsgisig: worker pid %d attached as worker %d", worker.pid, worker_id)


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn's hook, as a worker exits: leave the runtime."""
    detach()
