"""prana's daemon: ``prana serve`` and its HTTP API (DESIGN §12).

Needs the ``serve`` extra (``pip install "prana-runtime[serve]"``). It is built on
the engine's public API only: :func:`create_app` is a Starlette app over an open
:class:`prana.Engine`, and :func:`serve` runs one with Hypercorn until SIGTERM.
"""

from ._app import create_app as create_app
from ._daemon import ServeConfig as ServeConfig
from ._daemon import configure_logging as configure_logging
from ._daemon import configure_tracing as configure_tracing
from ._daemon import serve as serve
from ._processes import heartbeat as heartbeat
from ._processes import inherited_listener as inherited_listener
from ._processes import serve_in_processes as serve_in_processes
from ._processes import shared_figures as shared_figures

__all__ = (
    "ServeConfig",
    "configure_logging",
    "configure_tracing",
    "create_app",
    "heartbeat",
    "inherited_listener",
    "serve",
    "serve_in_processes",
    "shared_figures",
)
