"""compose.yaml's serving part, for real: two replicas and the load balancer, under a private project.

``podman-compose up --no-deps recommend-1 recommend-2 loadbalancer`` with the compose
file's own variables pointing at a private state folder, container names, loopback
ports and images, so a bench or a test runs the very spec users run, beside anything
else on the machine. Used by bench/bench_rollout.py and tests/test_containers.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from movierec.ops import rollout
from movierec.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
SERVING_PART = ("recommend-1", "recommend-2", "loadbalancer")


def compose_command() -> list[str]:
    """podman-compose from the project's virtualenv (requirements.txt), else from the PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found is None:
        raise RuntimeError("podman-compose is not installed (make install puts it in .venv)")
    return [found, "--podman-args=--runtime runc", "--file", str(COMPOSE_FILE)]


@dataclass
class Fleet:
    project: str
    env: dict[str, str]
    lb: rollout.LoadBalancer
    url: str  # the load balancer
    replicas: list[str]  # container names = HAProxy server names
    serving: Path  # the serving folder the replicas mount read-only
    stats_url: str

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose_command(), "--project-name", self.project, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    def images(self) -> list[str]:
        """The image id each replica runs now."""
        return [rollout.container_image_id(name) for name in self.replicas]

    def down(self) -> None:
        """Everything of this project, also the containers a rollout cloned (they keep their names)."""
        self.compose("down", "--timeout", "10", check=False)
        names = [
            *self.replicas,
            *(n + rollout.PREVIOUS_SUFFIX for n in self.replicas),
            f"{self.project}-loadbalancer",
        ]
        subprocess.run(["podman", "rm", "--force", "--ignore", *names], capture_output=True, check=False)


def start_fleet(
    state: Path,
    project: str,
    ports: tuple[int, int, int, int],
    service_image: str,
    lb_image: str,
    bootstrap: str,
    timeout: float = 180.0,
) -> Fleet:
    """Two replicas of ``service_image`` behind ``lb_image``; ports: replica 1, replica 2, LB, LB stats.

    ``state/serving`` must already hold a current serving file, or the replicas never become healthy.
    """
    replica_1, replica_2, lb_port, stats_port = ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")} | {
        "STATE_DIR": str(state),
        "NAME_PREFIX": project,
        "SERVICE_IMAGE": service_image,
        "LB_IMAGE": lb_image,
        "REPLICA_1_PORT": str(replica_1),
        "REPLICA_2_PORT": str(replica_2),
        "LB_STATS_PORT": str(stats_port),
        "MOVIEREC_SERVER_PORT": str(lb_port),
        "MOVIEREC_KAFKA_BOOTSTRAP": bootstrap,
    }
    for folder in ("serving", "experiments", "lb"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    fleet = Fleet(
        project=project,
        env=env,
        lb=rollout.LoadBalancer(state / "lb" / "haproxy.sock"),
        url=f"http://127.0.0.1:{lb_port}",
        replicas=[f"{project}-recommend-1", f"{project}-recommend-2"],
        serving=state / "serving",
        stats_url=f"http://127.0.0.1:{stats_port}",
    )
    try:
        fleet.compose("up", "--detach", "--no-deps", *SERVING_PART)
        wait_for(lambda: fleet.lb.socket_path.exists(), "HAProxy's admin socket", timeout)
        wait_for(lambda: all(s.status == "UP" for s in fleet.lb.servers()), "both replicas UP", timeout)
    except BaseException:
        fleet.down()
        raise
    return fleet


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
