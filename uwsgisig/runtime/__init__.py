"""The engine: a fork-based master with workers, mules, farms and a spooler.

It knows nothing of decorators; the public API reaches it through
`uwsgisig.platform`.
"""

from .config import FarmSpec, RuntimeConfig
from .runner import ProcessInfo, Runtime, RuntimeHandle

__all__ = ["FarmSpec", "ProcessInfo", "Runtime", "RuntimeConfig", "RuntimeHandle"]
