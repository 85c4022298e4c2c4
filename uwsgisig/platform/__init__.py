"""The one seam between the public API and an engine.

The API calls these functions and nothing below them; they run on uwsgisig's
own runtime (`uwsgisig.platform.embedded`).
"""

from .embedded import (
    NAME,
    add_postfork_hook,
    declare_farm,
    declare_mule,
    i_am_the_spooler,
    in_farm,
    masterpid,
    mule_id,
    numproc,
    parse_target,
    register_signal,
    signal,
    signal_received,
    signal_registered,
    signal_wait,
    worker_id,
)

__all__ = [
    "NAME",
    "add_postfork_hook",
    "declare_farm",
    "declare_mule",
    "i_am_the_spooler",
    "in_farm",
    "masterpid",
    "mule_id",
    "numproc",
    "parse_target",
    "register_signal",
    "signal",
    "signal_received",
    "signal_registered",
    "signal_wait",
    "worker_id",
]
