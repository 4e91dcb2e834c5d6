"""The images for real: built from the Dockerfile with podman, run, rolled out behind HAProxy.

Where podman is missing every test here is skipped with the reason (.ci/run installs it
with containers/install-tools.sh, so CI runs them). The session builds the base image
(debootstrap, once per machine), the service image twice with different labels ("old"
and "new": two image ids of the same code), the load balancer image, and a broken
service image (its server package removed) for the rollback path.

- one container: answers /recommend/<id> from a mounted serving file, is unhealthy
  before a file exists and healthy after (the swap works inside the container), runs as
  uid 10001 with a read-only root filesystem;
- two replicas behind the load balancer image under a fixed-rate load: a rollout to the
  new image with a serving-file swap in the middle loses no request; a canary gives one
  replica the old image and a small weight; a broken image is refused and rolled back,
  again without a failed request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.fixed_rate import Answer, FixedRateLoad
from bench.fleet import Fleet, start_fleet, wait_for
from movierec.ops import rollout
from movierec.settings import REPO_ROOT, Settings
from tests.conftest import free_port
from tests.test_server_store import FALLBACK, V1, V2, items_of, point_current, write_serving_file

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("podman") is None,
        reason="podman is not installed (containers/install-tools.sh installs it; .ci/run does)",
    ),
]

PREFIX = f"movierec-test-{os.getpid()}"
OLD = f"localhost/movierec-service:{PREFIX}-old"
NEW = f"localhost/movierec-service:{PREFIX}-new"
BROKEN = f"localhost/movierec-service:{PREFIX}-broken"
LB_IMAGE = f"localhost/movierec-loadbalancer:{PREFIX}"
RUNTIME = ["--runtime", "runc"]
LIMITS = ["--init", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
USERS = range(1, 151)
IMAGE_WORKERS = 2  # the service image's MOVIEREC_SERVER_WORKERS (Dockerfile)


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr[-2000:]}")
    return result


def build(target: str, image: str, commit: str) -> None:
    """containers/build-images.sh, as `make image` runs it, for one target under our own tag."""
    env = os.environ | {"IMAGE_TAG": image.rsplit(":", 1)[1], "GIT_COMMIT": commit, "TAG_LATEST": "0"}
    subprocess.run([REPO_ROOT / "containers" / "build-images.sh", target], env=env, check=True, timeout=1800)


@pytest.fixture(scope="session")
def images() -> Iterator[None]:
    """Base image (if missing), old/new/broken service images and the load balancer image."""
    subprocess.run([REPO_ROOT / "containers" / "base-image.sh"], check=True, timeout=1800)
    build("service", OLD, "old")
    build("service", NEW, "new")  # the same layers, another label: a distinct image id
    build("loadbalancer", LB_IMAGE, "test")
    broken = f"FROM {OLD}\nUSER root\nRUN rm -rf /app/server\nUSER 10001:10001\n"
    subprocess.run(
        ["podman", *RUNTIME, "build", "--format", "docker", "--ulimit", "nofile=20000:20000",
         "--tag", BROKEN, "--file", "-", str(REPO_ROOT / "containers")],
        input=broken, text=True, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    try:
        yield
    finally:
        for image in (OLD, NEW, BROKEN, LB_IMAGE):  # their layers stay cached for the next build
            podman("rmi", image, check=False)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test starts; all of them (and their -previous) removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--ignore", "--time", "5", name, name + rollout.PREVIOUS_SUFFIX, check=False)


def serving_home(root: Path) -> Path:
    serving = root / "serving"
    serving.mkdir(parents=True)
    serving.chmod(0o755)
    return serving


def healthy(name: str) -> bool:
    return podman("healthcheck", "run", name, check=False).returncode == 0


def test_the_service_image_answers_from_a_mounted_serving_file(
    images: None, containers: list[str], tmp_path: Path, kafka: Settings
) -> None:
    serving = serving_home(tmp_path)
    port = free_port()
    name = f"{PREFIX}-single"
    containers.append(name)
    # the image's own defaults (0.0.0.0:8082 inside), published on a loopback port of the host
    podman(
        *RUNTIME, "run", "--detach", "--name", name, *LIMITS, "--read-only",
        "--tmpfs", "/var/lib/movierec:rw,size=64m,U",
        "--volume", f"{serving}:/var/lib/movierec/serving:ro",
        "--publish", f"127.0.0.1:{port}:8082",
        "--env", f"MOVIEREC_KAFKA_BOOTSTRAP={kafka.kafka_bootstrap}",
        OLD,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(f"{url}/healthz") == 503, "the service to answer (no model yet: 503)")
    assert not healthy(name), "no serving file yet: the HEALTHCHECK must fail"

    write_serving_file(serving, V1, USERS)
    point_current(serving, V1)  # published on the host, seen through the mount
    wait_for(lambda: healthy(name), "podman healthcheck run to pass once a file is current")
    # Healthy says the worker that answered /healthz opened the file; the other notices `current`
    # on its own poll and may answer 503 a moment longer (CI once asked it in that moment).
    wait_for(lambda: workers_serving(name, V1) == IMAGE_WORKERS, "every worker of the image to open V1")
    assert httpx.get(f"{url}/recommend/7").text == items_of(7, V1)
    assert httpx.get(f"{url}/recommend/999999").text == FALLBACK
    assert httpx.get(f"{url}/recommend/x").status_code == 400

    write_serving_file(serving, V2, USERS)
    point_current(serving, V2)
    wait_for(lambda: httpx.get(f"{url}/recommend/7").text == items_of(7, V2), "the swap inside")

    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    for path in ("/app/written", "/var/lib/movierec/serving/written"):
        denied = podman("exec", name, "touch", path, check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    config = podman("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Healthcheck}}", OLD)
    assert config.stdout.startswith("10001:10001 ") and "movierec-healthcheck" in config.stdout


def workers_serving(name: str, version: str) -> int:
    """How many of the container's workers logged opening ``version`` (server/store.py, one line each)."""
    logs = podman("logs", name, check=False)
    return (logs.stdout + logs.stderr).count(f"serving {version} (")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def fleet(images: None, tmp_path: Path, kafka: Settings) -> Iterator[Fleet]:
    """compose.yaml's two replicas of OLD and its load balancer, under a private project."""
    state = tmp_path / "state"
    serving = serving_home(state)
    write_serving_file(serving, V1, USERS)
    point_current(serving, V1)
    ports = (free_port(), free_port(), free_port(), free_port())
    fleet = start_fleet(state, f"{PREFIX}-fleet", ports, OLD, LB_IMAGE, kafka.kafka_bootstrap)
    try:
        yield fleet
    finally:
        fleet.down()


def load_on(fleet: Fleet) -> FixedRateLoad:
    """A steady stream of requests through the load balancer. Slow on purpose (25/s) and patient
    (10 s timeout): on a busy machine the Python client itself falls behind, and a failure here
    must be the service's (no answer or not 200), not the client's; latency is the bench's job."""
    url = fleet.url
    return FixedRateLoad(lambda i: f"{url}/recommend/{USERS[i % len(USERS)]}", 25.0, timeout=10.0).start()


def failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200]


def test_a_rollout_with_a_swap_under_load_loses_no_request(fleet: Fleet) -> None:
    new_id = rollout.image_id(NEW)
    assert new_id not in fleet.images()
    steps: list[rollout.Step] = []

    def swap_after_first(step: rollout.Step) -> None:
        steps.append(step)
        if step.what.startswith("done") and step.replica == fleet.replicas[0]:
            write_serving_file(fleet.serving, V2, USERS)  # the pipeline publishes meanwhile
            point_current(fleet.serving, V2)

    load = load_on(fleet)
    replaced = rollout.Rollout(fleet.lb, NEW, progress=swap_after_first).run()
    wait_for(lambda: httpx.get(f"{fleet.url}/recommend/3").text == items_of(3, V2), "v2 through the LB")
    time.sleep(1.0)  # a last second of load on the new replicas with the new file
    answers = load.stop()

    assert replaced == fleet.replicas
    assert fleet.images() == [new_id, new_id]
    assert [s.what for s in steps if s.what.startswith("draining")] == ["draining (no new requests)"] * 2
    assert len(answers) > 25
    assert failures(answers) == [], failures(answers)[:5]
    versions = [a.model_version for a in answers]
    assert versions[0] == V1 and versions[-1] == V2
    # every replica answers from v2 after the swap, whichever the load balancer picks
    for user in USERS[:40]:
        assert httpx.get(f"{fleet.url}/recommend/{user}").text == items_of(user, V2)


def test_a_canary_takes_a_small_share_of_users_and_a_broken_image_is_rolled_back(fleet: Fleet) -> None:
    old_id, new_id = rollout.image_id(OLD), rollout.image_id(NEW)
    load = load_on(fleet)
    rollout.Rollout(fleet.lb, NEW).run(canary=1, weight=10)
    assert fleet.images() == [new_id, old_id]
    weights = {s.name: s.weight for s in fleet.lb.servers()}
    assert weights == {fleet.replicas[0]: 10, fleet.replicas[1]: 100}

    with pytest.raises(rollout.RolloutError, match="put back on its old image"):
        rollout.Rollout(fleet.lb, BROKEN, healthy_seconds=60).run()
    answers = load.stop()
    assert failures(answers) == [], failures(answers)[:5]
    assert fleet.images() == [new_id, old_id]  # the broken image replaced nothing
    assert all(s.status == "UP" for s in fleet.lb.servers())

    # The share of users each replica gets: HAProxy counts the requests per server.
    before = _totals(fleet.lb)
    for user in range(1000, 3000):
        assert httpx.get(f"{fleet.url}/recommend/{user}").status_code == 200
    after = _totals(fleet.lb)
    canary, other = (after[name] - before[name] for name in fleet.replicas)
    assert canary + other == 2000
    assert 0 < canary < other / 3, (canary, other)


def _totals(lb: rollout.LoadBalancer) -> dict[str, int]:
    return {server.name: server.requests for server in lb.servers()}
