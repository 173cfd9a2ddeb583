"""A gateway as one host of a fleet: its instance name and version, as /stats and /metrics
show them.

``/stats`` and ``/metrics`` are per host (per server: the workers of one host are merged).
Several hosts behind a load balancer are told apart by their instance name (``--instance``,
default ``<hostname>:<port>``): ``/stats`` carries it at the top level, ``/metrics`` as one
``dbslayer_instance_info{instance="...",version="..."} 1`` family. No other family gets an
``instance`` label: Prometheus adds its own ``instance`` target label to every series it
scrapes, and a label of the same name in the exposition would clash with it (renamed
``exported_instance``, or overwrite the target's with ``honor_labels``). Figures of the fleet
are Prometheus aggregates, e.g. ``sum without (instance) (rate(dbslayer_requests_total[1m]))``.
"""

from __future__ import annotations

import socket
from importlib import metadata

#: The distribution whose version /metrics reports.
DISTRIBUTION = "dbslayer"


def instance_name(configured: str, port: int, hostname: str | None = None) -> str:
    """The instance name: ``configured`` when set, else ``<hostname>:<port>``. (Pure but for
    the host name, which may be given.)"""
    if configured:
        return configured
    host = hostname if hostname is not None else socket.gethostname()
    return f"{host}:{port}"


def gateway_version() -> str:
    """This gateway's version (the installed distribution's), or ``unknown``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
