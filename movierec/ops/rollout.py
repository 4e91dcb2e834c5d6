"""``movierec rollout``: a new service image across the replicas behind HAProxy, with no failed request.

The replicas are podman containers; HAProxy (containers/haproxy.cfg) balances
``/recommend/<userid>`` over them and names each ``server`` after its container.
One replica at a time, through HAProxy's runtime API (its admin socket):

1. **drain**: the server takes no new requests; wait until its in-flight ones are done;
2. **maint**: out of the rotation, its health checks stop;
3. **stop** the container (SIGTERM: Sanic finishes what is in flight, producers flush);
4. **start the new image**: the command that created the container (podman keeps it:
   ``.Config.CreateCommand``, whether compose or a person ran it) again, as ``podman create``
   with the new image, so name, mounts, network, environment, limits and health check stay
   as they were; the old container is kept aside, renamed. (``podman container clone`` with
   a new image would be the obvious tool, but podman 4.3's clone drops the network mode,
   the ulimits and the health check.)
5. **wait for health**: the image's HEALTHCHECK (``podman healthcheck run``) passes;
6. **re-admit**: ``ready``, and wait until HAProxy's own check marks the server UP;
   then the old container is removed.

A replica whose new container does not become healthy is put back as it was (the old
container restarted and re-admitted) and the rollout stops with the reason. A canary
(``--canary N``) replaces only the first N replicas and gives them ``--weight`` (their
share of users, by HAProxy's consistent hash of the user id); a full rollout resets the
weights. Replicas already on the image are left alone, so a rollout can be re-run, and a
rollback is a rollout of the previous image.
"""

from __future__ import annotations

import csv
import json
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from movierec.settings import Settings

log = logging.getLogger(__name__)

BACKEND = "recommend"  # the HAProxy backend of the replicas (containers/haproxy.cfg)
DETACH = ("-d", "--detach", "--detach=true")  # `run` options that `create` refuses
PREVIOUS_SUFFIX = "-previous"  # the old container while its replacement starts
STOP_SECONDS = 30  # SIGTERM, then SIGKILL: Sanic's graceful stop takes well under this
DRAIN_SECONDS = 30.0
HEALTHY_SECONDS = 120.0
POLL_SECONDS = 0.25  # HAProxy's socket: cheap to ask
HEALTH_POLL_SECONDS = 1.0  # `podman healthcheck run` starts a process in the container: not cheap


def default_socket(settings: Settings) -> Path:
    """Where compose.yaml's load balancer puts its admin socket (``$MOVIEREC_HOME/lb``, mounted)."""
    return settings.home / "lb" / "haproxy.sock"


class RolloutError(RuntimeError):
    """The rollout could not go on; the message says which replica and why."""


# --- HAProxy's runtime API ------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One server of the backend as HAProxy sees it (``show stat``)."""

    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", ...
    weight: int
    sessions: int  # requests in flight on it now (scur)
    requests: int  # requests it has been sent since HAProxy started (stot)
    address: str


class LoadBalancer:
    """HAProxy's admin socket: one command per connection (the non-interactive mode)."""

    def __init__(self, socket_path: Path, backend: str = BACKEND, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.backend = backend
        self.timeout = timeout

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout)
            try:
                conn.connect(str(self.socket_path))
            except OSError as exc:
                raise RolloutError(f"cannot reach HAProxy's admin socket {self.socket_path}: {exc}") from None
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> list[Server]:
        """The backend's servers in configuration order."""
        return parse_stat(self.command("show stat"), self.backend)

    def server(self, name: str) -> Server:
        for server in self.servers():
            if server.name == name:
                return server
        raise RolloutError(f"HAProxy backend {self.backend!r} has no server {name!r}")

    def set_state(self, name: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``."""
        self._expect_empty(f"set server {self.backend}/{name} state {state}")

    def set_weight(self, name: str, weight: str) -> None:
        """An absolute weight (``"10"``) or a share of the configured one (``"100%"``)."""
        self._expect_empty(f"set weight {self.backend}/{name} {weight}")

    def _expect_empty(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer:  # HAProxy answers a successful set command with an empty line
            raise RolloutError(f"HAProxy refused {line!r}: {answer}")


def parse_stat(text: str, backend: str) -> list[Server]:
    """The servers of ``backend`` in HAProxy's ``show stat`` CSV (header line starts with ``# ``)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RolloutError(f"unexpected answer to 'show stat': {text[:200]!r}")
    rows = csv.DictReader([lines[0][2:], *lines[1:]])
    return [
        Server(
            name=row["svname"],
            status=row["status"],
            weight=int(row["weight"] or 0),
            sessions=int(row["scur"] or 0),
            requests=int(row["stot"] or 0),
            address=row.get("addr") or "",
        )
        for row in rows
        if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
    ]


# --- podman ---------------------------------------------------------------------------------------


def podman(*args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RolloutError("podman is not installed (containers/install-tools.sh installs it)") from None
    if check and result.returncode != 0:
        raise RolloutError(f"podman {' '.join(args)} failed: {result.stderr.strip()[-1000:]}")
    return result


def image_id(image: str) -> str:
    result = podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
    if result.returncode != 0:
        raise RolloutError(f"no image {image!r} here (build it first: make image)")
    return result.stdout.strip()


def container_image_id(name: str) -> str:
    result = podman("container", "inspect", "--format", "{{.Image}}", name, check=False)
    if result.returncode != 0:
        raise RolloutError(f"HAProxy server {name!r} has no container of that name")
    return result.stdout.strip()


def create_command(name: str) -> tuple[list[str], str]:
    """(the argv that created container ``name``, the image as that argv names it)."""
    result = podman("container", "inspect", "--format", "{{json .Config.CreateCommand}}|{{.ImageName}}", name)
    argv, _, image = result.stdout.strip().rpartition("|")
    return json.loads(argv), image


def recreate_command(argv: Sequence[str], old_image: str, new_image: str) -> list[str]:
    """``argv`` (a ``podman [global options] run|create ... IMAGE [command]``) as a ``podman create``
    of ``new_image``: the same options, not detached (``create`` starts nothing)."""
    verbs = [i for i, token in enumerate(argv) if token in ("run", "create")]
    if not verbs:
        raise RolloutError(f"not a podman run or create command: {' '.join(argv)}")
    verb = verbs[0]
    images = [i for i, token in enumerate(argv) if i > verb and token == old_image]
    if len(images) != 1:
        raise RolloutError(f"cannot tell which argument is the image {old_image!r} in: {' '.join(argv)}")
    at = images[0]
    options = [token for token in argv[verb + 1 : at] if token not in DETACH]
    return [*argv[:verb], "create", *options, new_image, *argv[at + 1 :]]


def container_exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def healthy(name: str) -> bool:
    """The image's HEALTHCHECK passes now (podman runs it inside the container)."""
    return podman("healthcheck", "run", name, check=False, timeout=30.0).returncode == 0


def running(name: str) -> bool:
    result = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
    return result.stdout.strip() == "true"


# --- the rollout ----------------------------------------------------------------------------------


@dataclass
class Step:
    """A progress line: which replica, what happened, seconds since the rollout began."""

    replica: str
    what: str
    seconds: float

    def __str__(self) -> str:
        return f"[{self.seconds:6.1f} s] {self.replica}: {self.what}"


class Rollout:
    def __init__(
        self,
        lb: LoadBalancer,
        image: str,
        progress: Callable[[Step], None] = lambda step: log.info("%s", step),
        healthy_seconds: float = HEALTHY_SECONDS,
    ) -> None:
        self.lb = lb
        self.image = image
        self.image_id = image_id(image)
        self.progress = progress
        self.healthy_seconds = healthy_seconds
        self.began = time.monotonic()

    def say(self, replica: str, what: str) -> None:
        self.progress(Step(replica, what, time.monotonic() - self.began))

    def run(self, canary: int | None = None, weight: int | None = None) -> list[str]:
        """Replace the replicas (the first ``canary`` of them, if given); the names replaced."""
        servers = self.lb.servers()
        if len(servers) < 2:
            raise RolloutError(f"{len(servers)} server(s) in backend {self.lb.backend!r}: a rollout needs 2+")
        if canary is not None and not 0 < canary < len(servers):
            raise RolloutError(f"--canary leaves 1+ replica on the old image: 1..{len(servers) - 1}")
        down = [s.name for s in servers if s.status != "UP"]
        if down:  # replacing one while another is out would leave nobody to answer
            raise RolloutError(f"not every replica is UP before the rollout: {', '.join(down)}")
        chosen = servers if canary is None else servers[:canary]
        replaced = []
        for server in chosen:
            if container_image_id(server.name) == self.image_id:
                self.say(server.name, f"already runs {self.image}")
            else:
                self.replace(server.name)
                replaced.append(server.name)
        # A canary's share of users is its weight; a full rollout puts every weight back.
        canary_weight = None if canary is None or weight is None else str(weight)
        for server in servers:
            self.lb.set_weight(server.name, canary_weight if canary_weight and server in chosen else "100%")
        if canary_weight:
            self.say(", ".join(s.name for s in chosen), f"canary: weight {weight}, the others 100")
        return replaced

    def replace(self, name: str) -> None:
        previous = name + PREVIOUS_SUFFIX
        if container_exists(previous):
            raise RolloutError(f"{previous} exists: an earlier rollout did not finish; remove or rename it")
        argv, old_image = create_command(name)
        create = recreate_command(argv, old_image, self.image)
        self.drain(name)
        self.say(name, "stopping (graceful: in-flight requests finish)")
        podman("stop", "--time", str(STOP_SECONDS), name)
        podman("rename", name, previous)
        try:
            podman(*create[1:])  # argv[0] is the podman that created it; ours runs the same options
            podman("start", name)
            self.say(name, f"started on {self.image}; waiting for its health check")
            self.wait_healthy(name)
            self.admit(name)
        except RolloutError as exc:
            self.say(name, f"new container failed ({exc}); putting the old one back")
            self.restore(name, previous)
            raise RolloutError(f"{name}: {exc} (the replica was put back on its old image)") from None
        podman("rm", previous)
        self.say(name, f"done: serving from {self.image}")

    def drain(self, name: str) -> None:
        self.lb.set_state(name, "drain")
        self.say(name, "draining (no new requests)")
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.lb.server(name).sessions > 0:
            if time.monotonic() > deadline:
                self.say(name, f"still {self.lb.server(name).sessions} in flight after {DRAIN_SECONDS:.0f} s")
                break
            time.sleep(POLL_SECONDS)
        self.lb.set_state(name, "maint")

    def wait_healthy(self, name: str) -> None:
        deadline = time.monotonic() + self.healthy_seconds
        while not healthy(name):
            if not running(name):
                logs = podman("logs", "--tail", "20", name, check=False)
                raise RolloutError(f"the container exited:\n{(logs.stdout + logs.stderr).strip()}")
            if time.monotonic() > deadline:
                raise RolloutError(f"not healthy after {self.healthy_seconds:.0f} s")
            time.sleep(HEALTH_POLL_SECONDS)

    def admit(self, name: str) -> None:
        """``ready``, then wait until HAProxy's own health check has marked the server UP."""
        self.lb.set_state(name, "ready")
        deadline = time.monotonic() + self.healthy_seconds
        while self.lb.server(name).status != "UP":  # not "UP 1/3": that one is failing checks
            if time.monotonic() > deadline:
                raise RolloutError(f"HAProxy does not see it UP after {self.healthy_seconds:.0f} s")
            time.sleep(POLL_SECONDS)
        self.say(name, "re-admitted (HAProxy check UP)")

    def restore(self, name: str, previous: str) -> None:
        podman("rm", "--force", name, check=False)
        podman("rename", previous, name)
        podman("start", name)
        self.wait_healthy(name)
        self.admit(name)


def status(lb: LoadBalancer) -> list[dict[str, object]]:
    """One row per replica: HAProxy's view and the container's image."""
    rows: list[dict[str, object]] = []
    for server in lb.servers():
        image = podman("container", "inspect", "--format", "{{.ImageName}}", server.name, check=False)
        rows.append(
            {
                "replica": server.name,
                "address": server.address,
                "lb_status": server.status,
                "weight": server.weight,
                "in_flight": server.sessions,
                "image": image.stdout.strip() or "(no container)",
            }
        )
    return rows


def render_status(rows: Sequence[dict[str, object]]) -> str:
    """A table, one line per replica."""
    columns = ("replica", "lb_status", "weight", "in_flight", "address", "image")
    table = [columns, *([str(row[c]) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
    )
