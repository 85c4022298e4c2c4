"""The one seam between the public API and an engine.

The API calls these functions and nothing below them. They run on uwsgisig's
own runtime (`uwsgisig.platform.embedded`), or, when ``import uwsgi`` finds a
real uWSGI server's module, on that server (`uwsgisig.platform.uwsgi`). Both
define the same set of calls.
"""

from . import embedded as _embedded
from .embedded import *  # noqa: F403 - the seam is exactly the engine's public calls

__all__ = list(_embedded.__all__)


def _under_uwsgi() -> bool:
    """Whether this process runs inside a uWSGI server (not our uwsgi-compatible module)."""
    try:
        import uwsgi
    except ImportError:
        return False
    return not getattr(uwsgi, "UWSGISIG_COMPAT", False)


if _under_uwsgi():
    from .uwsgi import *  # noqa: F403
