"""The children's side: a child's bootstrap after fork, and its signal loop."""

from .bootstrap import reset_posix_signals, run_child
from .loop import SignalLoop, describe_self

__all__ = ["SignalLoop", "describe_self", "reset_posix_signals", "run_child"]
