"""The rollout's pure parts: HAProxy's ``show stat`` read, a container's create command re-aimed.

The rollout itself runs against real containers and HAProxy in tests/test_containers.py.
"""

from __future__ import annotations

import pytest

from movierec.ops.rollout import RolloutError, parse_stat, recreate_command

# What HAProxy 2.6 answers to `show stat` (columns cut after the ones read; the real answer has 100+).
HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis"
STAT = f"""{HEADER},status,weight,act,bck,addr
recommend,FRONTEND,,,3,9,4096,812,1,2,0,0,0,,,,,OPEN,,,,
recommend,movierec-recommend-1,0,0,2,5,,400,1,2,,0,,0,0,0,0,UP,100,1,0,127.0.0.1:8182
recommend,movierec-recommend-2,0,0,0,4,,412,1,2,,0,,0,0,0,0,MAINT,10,1,0,127.0.0.1:8282
recommend,BACKEND,0,0,2,9,410,812,1,2,0,0,,0,0,0,0,UP,110,2,0,
lb-stats,FRONTEND,,,1,1,4096,3,1,2,0,0,0,,,,,OPEN,,,,
"""


def test_show_stat_gives_the_backend_servers_in_order() -> None:
    servers = parse_stat(STAT, "recommend")
    assert [s.name for s in servers] == ["movierec-recommend-1", "movierec-recommend-2"]
    first, second = servers
    assert (first.status, first.weight, first.sessions, first.requests) == ("UP", 100, 2, 400)
    assert (second.status, second.weight, second.address) == ("MAINT", 10, "127.0.0.1:8282")
    assert parse_stat(STAT, "other") == []


def test_an_answer_that_is_not_stat_csv_is_an_error() -> None:
    with pytest.raises(RolloutError, match="unexpected answer"):
        parse_stat("Unknown command. Please enter one of the following commands only :\n", "recommend")


COMPOSE_CREATE = [
    "podman", "--runtime", "runc", "create", "--name=movierec-recommend-1",
    "--label", "io.podman.compose.project=movierec", "--read-only", "--init",
    "-e", "MOVIEREC_SERVER_PORT=8182", "--tmpfs", "/var/lib/movierec:rw,size=64m,U",
    "-v", "/srv/state/serving:/var/lib/movierec/serving:ro", "--network", "host",
    "--ulimit", "nofile=20000:20000", "--restart", "unless-stopped",
    "localhost/movierec-service:latest",
]  # fmt: skip


def test_a_compose_create_command_gets_the_new_image_and_keeps_every_option() -> None:
    again = recreate_command(
        COMPOSE_CREATE, "localhost/movierec-service:latest", "localhost/movierec-service:abc"
    )
    assert again == [*COMPOSE_CREATE[:-1], "localhost/movierec-service:abc"]


def test_a_detached_run_becomes_a_create_and_the_command_after_the_image_stays() -> None:
    argv = ["/usr/bin/podman", "run", "-d", "--name", "r1", "--env", "X=-d", "img:1", "serve", "-d"]
    assert recreate_command(argv, "img:1", "img:2") == [
        "/usr/bin/podman", "create", "--name", "r1", "--env", "X=-d", "img:2", "serve", "-d"
    ]  # fmt: skip


def test_an_image_named_twice_or_not_at_all_is_refused() -> None:
    with pytest.raises(RolloutError, match="cannot tell which argument"):
        recreate_command(["podman", "run", "--label", "img:1", "img:1"], "img:1", "img:2")
    with pytest.raises(RolloutError, match="cannot tell which argument"):
        recreate_command(["podman", "run", "other:1"], "img:1", "img:2")
    with pytest.raises(RolloutError, match="not a podman run or create"):
        recreate_command(["podman", "start", "r1"], "img:1", "img:2")
