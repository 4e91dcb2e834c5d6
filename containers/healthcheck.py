#!/opt/venv/bin/python
"""The image's HEALTHCHECK: exit 0 if this container's service answers /healthz with 200, else 1.

A 503 (no valid serving file yet) is unhealthy: a load balancer must not send it traffic.
Standard library only, so a check costs one short interpreter start.
"""

import os
import sys
import urllib.error
import urllib.request

port = os.environ.get("MOVIEREC_SERVER_PORT") or "8082"
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError) as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
