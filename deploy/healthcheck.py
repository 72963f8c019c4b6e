"""Container health check of a streamrec worker: exit 0 when its /healthz answers 200.

The port is the one the worker serves on, ``STREAMREC_WORKER_WEB_PORT`` (default 6066),
read from the same environment the worker reads, so a worker moved to another port (as
compose's worker-2 is) is probed where it listens. Standard library only: it runs with the
image's Python and imports nothing of streamrec, so a probe costs milliseconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 6066


def url(environ: Mapping[str, str]) -> str:
    """The liveness URL of the worker configured by ``environ``."""
    port = environ.get("STREAMREC_WORKER_WEB_PORT") or DEFAULT_PORT
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    """Probe once; a failure says why on one line (Docker keeps it in the health log)."""
    target = url(os.environ)
    try:
        with urllib.request.urlopen(target, timeout=2) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {target} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
