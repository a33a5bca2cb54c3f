"""ABI 1.2's per-request conveniences, through a real CMake-built plugin (perrequest) served
by `plughost serve` over HTTP on both request paths: an instance's slot, released by the host
when the exchange ends (answered, refused or failed); one-call answers; the JSON error form
with the host's escaping; the request id a middleware sets and the host names requests by."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import Server, both_paths

LONG_ID = "x" * 201
MESSAGE = 'too "many" requests\\ from \u00e9\u00e8 \u2603\n\tnow\x01'


def write_config(folder: Path, plugin_dir: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(f"  - path: {plugin_dir / n}.so\n" for n in ("perrequest", "requestid", "trace"))
    )
    slot = "plugins.perrequest.middlewares.SlotMiddleware"
    (folder / "middlewares.yaml").write_text(
        f"""\
middlewares:
  A: {{use: {slot}, config: {{name: a}}}}
  B: {{use: {slot}, config: {{name: b, twice: true}}}}
  Respond: {{use: {slot}, config: {{name: r, respond: 201}}}}
  Refuse:
    use: {slot}
    config: {{name: e, respondError: 429, message: {json.dumps(MESSAGE)}}}
  Fail: {{use: plugins.trace.middlewares.TraceMiddleware, config: {{name: f, fail: request}}}}
  RequestID: {{use: plugins.requestid.middlewares.RequestIdMiddleware}}
"""
    )
    (folder / "actions.yaml").write_text(
        f"""\
actions:
  Echo: {{use: plugins.trace.actions.EchoAction}}
  Stats: {{use: plugins.perrequest.actions.SlotStatsAction}}
  GoodId: {{use: plugins.perrequest.actions.RequestIdAction, config: {{id: abc-123}}}}
  LongId: {{use: plugins.perrequest.actions.RequestIdAction, config: {{id: {LONG_ID}}}}}
"""
    )
    routes = {
        "Slots": ("/slots", "[A, B]", "Echo"),
        "SlotsWithId": ("/slots-id", "[RequestID, A]", "Echo"),
        "Respond": ("/respond", "[A, Respond]", "Echo"),
        "Refuse": ("/refuse", "[Refuse]", "Echo"),
        "RefuseWithId": ("/refuse-id", "[RequestID, Refuse]", "Echo"),
        "Fails": ("/fails", "[A, Fail]", "Echo"),
        "FailsWithId": ("/fails-id", "[RequestID, A, Fail]", "Echo"),
        "FailsOnce": ("/fails-once", "[A, Fail]", "Echo"),  # logged: its first failure
        "Stats": ("/stats", "[]", "Stats"),
        "GoodId": ("/id/good", "[]", "GoodId"),
        "LongId": ("/id/long", "[]", "LongId"),
    }
    (folder / "routes.yaml").write_text(
        "routes:\n"
        + "".join(
            f"  {name}:\n    gatewayPath: {path}\n    methods: [GET]\n"
            f"    middlewares: {mws}\n    action: {action}\n"
            for name, (path, mws, action) in routes.items()
        )
    )
    return folder


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path
) -> Iterator[tuple[Server, Server]]:
    with both_paths(write_config(tmp_path_factory.mktemp("perrequest"), test_plugin_dir)) as s:
        yield s


def stats(server: Server) -> dict[str, int]:
    status, _, body = server.get("/stats")
    assert status == 200
    return json.loads(body)


def settled(server: Server) -> dict[str, int]:
    """The counters once every slot of the finished requests is released."""
    deadline = time.monotonic() + 5
    while (s := stats(server))["allocated"] != s["released"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return s


def test_each_instance_has_its_own_slot_and_the_host_releases_every_value(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        before = settled(server)
        for _ in range(5):
            status, headers, _ = server.get("/slots")
            assert status == 200
            assert headers["X-Slot-a"] == "a"
            assert headers["X-Slot-b"] == "b"  # set twice: the second value is what it reads
            assert headers["X-Request-Id-Seen"] == "none"  # no element set an id
        after = settled(server)
        # A hangs one state a request, B two (the first replaced, so released by the host)
        assert after["allocated"] - before["allocated"] == 5 * 3
        assert after["released"] == after["allocated"]


def test_slots_are_released_when_an_element_answers_or_fails(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        before = settled(server)
        status, headers, body = server.get("/respond")
        assert (status, body) == (201, b"r")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["X-Slot-a"] == "a"  # the response phase ran for A with its slot
        status, _, body = server.get("/fails")
        assert status == 500
        after = settled(server)
        assert after["allocated"] - before["allocated"] == 3
        assert after["released"] == after["allocated"]


def test_respond_error_writes_the_json_form_with_the_message_escaped(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        status, headers, body = server.get("/refuse")
        assert status == 429
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"error": MESSAGE, "status": 429}
        assert b"\\u0001" in body and b"\\n" in body and b'\\"many\\"' in body


def test_the_request_id_a_middleware_sets_names_the_request_everywhere(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        status, headers, _ = server.get("/slots-id", headers={"X-Request-ID": "rid-42"})
        assert (status, headers["X-Request-Id-Seen"]) == (200, "rid-42")
        status, _, body = server.get("/refuse-id", headers={"X-Request-ID": "rid-43"})
        assert json.loads(body) == {"error": MESSAGE, "status": 429, "requestId": "rid-43"}
        start = len(server.output())
        status, _, body = server.get("/fails-id", headers={"X-Request-ID": "rid-44"})
        assert status == 500
        assert json.loads(body) == {"error": "internal error", "status": 500, "requestId": "rid-44"}
        assert "(request id rid-44)" in server.output_after(start, "rid-44")


def test_without_a_request_id_the_host_gives_its_error_answer_one_and_logs_it(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        start = len(server.output())
        # no requestid middleware on this route: a client's header is not the request's id
        status, _, body = server.get("/fails-once", headers={"X-Request-ID": "not-this"})
        answer = json.loads(body)
        assert status == 500 and answer["requestId"] != "not-this"
        assert len(answer["requestId"]) == 36 and answer["requestId"][14] == "4"  # a UUIDv4
        assert f"(request id {answer['requestId']})" in server.output_after(
            start, answer["requestId"]
        )


def test_request_id_set_takes_a_sane_id_and_refuses_a_long_one(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        assert server.get("/id/good")[::2] == (200, b"id=abc-123")
        status, _, body = server.get("/id/long")
        assert (status, json.loads(body)) == (400, {"error": "refused: the id", "status": 400})
