"""The one seam between the public API and an engine.

The API calls these functions and nothing below them; they run on uwsgisig's
own runtime (`uwsgisig.platform.embedded`), which defines the whole set.
"""

from . import embedded as _engine
from .embedded import *  # noqa: F403 - the seam is exactly the engine's public calls

__all__ = list(_engine.__all__)
