"""The engine: a fork-based master with workers, mules, farms and a spooler.

It knows nothing of decorators; the public API reaches it through
`uwsgisig.platform`.
"""

from .handle import ProcessInfo, RuntimeHandle
from .model.config import FarmSpec, RuntimeConfig
from .runner import Runtime

__all__ = ["FarmSpec", "ProcessInfo", "Runtime", "RuntimeConfig", "RuntimeHandle"]
