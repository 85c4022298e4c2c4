"""The master process: its loop, the router, flow control, the supervisor."""

from .loop import Master

__all__ = ["Master"]
