"""``--compat original`` on both HTTP channels (the fast channel and twisted.web's), in
memory: Connection: close after every answer, no chunks, 200 for refused requests (401 and
404 kept), JSON labelled text/plain as the original did, no 100-continue probe; and without
it, nothing changes."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from api.fastpath import (
    COMPAT_JSON_TYPE,
    PROBE,
    compat_status,
    compat_type,
    refusal,
)
from api.http import GatewaySite, json_answer, json_error

BIG_ROWS = [b'{"RESULT":{"HEADER":["a"],"ROWS":[', b"[1],[2]", b',[3]],"TYPES":["L"]}}']


def answer(request: Any, what: bytes) -> Any:
    """The answers both channels give, by what is asked (the query, or the path's end)."""
    if what == b"error":
        return json_error(request, 400, "request is not a JSON object")
    if what == b"busy":
        request.setHeader(b"Retry-After", b"1")
        return json_error(request, 503, "too many requests in flight")
    if what == b"auth":
        request.setHeader(b"WWW-Authenticate", b'Basic realm="dbslayer"')
        return json_error(request, 401, "credentials needed")
    if what == b"missing":
        return json_error(request, 404, "no such path")
    if what == b"ready":
        return json_answer(request, {"ready": False}, 503)  # (not an ERROR answer)
    if what == b"stream":
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        for part in BIG_ROWS:
            request.write(part)
        request.finish()
        return None
    if what == b"pending":
        return None
    return json_answer(request, {"RESULT": {"HEADER": ["a"], "ROWS": [[1]], "TYPES": ["L"]}})


class Web(Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        body = answer(request, request.path.rsplit(b"/", 1)[-1])
        return NOT_DONE_YET if body is None else body


class Server:
    def __init__(self, compat: bool) -> None:
        self.clock = MemoryReactorClock()
        self.site = GatewaySite(Web(), 4096, self.clock, timeout=60)
        self.site.compat = compat
        self.finished: list[Any] = []
        self.site.on_finished = self.finished.append
        self.site.fast_handlers = {b"/db": self.fast}

    def fast(self, request: Any) -> Any:
        body = answer(request, request.query)
        if body is None:
            return Deferred()  # (answered already, or never)
        return body

    def ask(self, raw: bytes) -> tuple[StringTransport, Any]:
        transport = StringTransport()
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        # (the protocol serving it now: twisted.web's, once the fast channel handed it over)
        return transport, getattr(transport, "protocol", channel)


class Reply:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()


def get(target: bytes, version: bytes = b"HTTP/1.1", method: bytes = b"GET") -> bytes:
    return b"%s %s %s\r\nHost: 127.0.0.1\r\n\r\n" % (method, target, version)


#: The same answers on the fast channel (/db?...) and on twisted.web's (/web/...).
TARGETS = {"fast": b"/db?%s", "web": b"/web/%s"}


@pytest.mark.parametrize("channel", sorted(TARGETS))
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_a_refused_request_gets_200_with_its_error_and_the_close(
    channel: str, version: bytes
) -> None:
    server = Server(compat=True)
    for what, honest in ((b"error", 400), (b"busy", 503)):
        transport, _ = server.ask(get(TARGETS[channel] % what, version))
        reply = Reply(transport.value())
        assert reply.status == 200 and reply.status_line.startswith(version)
        assert reply.headers[b"content-type"] == COMPAT_JSON_TYPE
        assert reply.headers[b"connection"] == b"close" and transport.disconnecting
        assert b"transfer-encoding" not in reply.headers
        assert reply.body.startswith(b'{"ERROR":')
        assert int(reply.headers[b"content-length"]) == len(reply.body)
        assert server.finished[-1].code == honest  # (the journals keep the honest status)
    assert b"retry-after" in reply.headers


@pytest.mark.parametrize("channel", sorted(TARGETS))
def test_a_streamed_answer_ends_with_the_connection_never_chunked(channel: str) -> None:
    server = Server(compat=True)
    transport, _ = server.ask(get(TARGETS[channel] % b"stream"))
    reply = Reply(transport.value())
    assert reply.status == 200 and reply.headers[b"connection"] == b"close"
    assert b"transfer-encoding" not in reply.headers and b"content-length" not in reply.headers
    assert reply.body == b"".join(BIG_ROWS)  # the bytes as written: no chunk framing
    assert transport.disconnecting


@pytest.mark.parametrize("channel", sorted(TARGETS))
def test_every_answer_closes_its_connection(channel: str) -> None:
    server = Server(compat=True)
    for extra in (b"", b"Connection: keep-alive\r\n"):
        raw = get(TARGETS[channel] % b"ok").replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n")
        transport, _ = server.ask(raw)
        reply = Reply(transport.value())
        assert reply.status == 200 and reply.headers[b"connection"] == b"close"
        assert transport.disconnecting


@pytest.mark.parametrize("channel", sorted(TARGETS))
def test_401_404_and_answers_that_are_not_errors_keep_their_status(channel: str) -> None:
    server = Server(compat=True)
    transport, _ = server.ask(get(TARGETS[channel] % b"auth"))
    reply = Reply(transport.value())
    assert reply.status == 401 and reply.headers[b"www-authenticate"].startswith(b"Basic")
    for what, status in ((b"missing", 404), (b"ready", 503)):
        transport, _ = server.ask(get(TARGETS[channel] % what))
        assert Reply(transport.value()).status == status


def test_head_keeps_its_status() -> None:
    """An answer to HEAD has no body to say what failed: its status stays."""
    server = Server(compat=True)
    transport, _ = server.ask(get(b"/web/error", method=b"HEAD"))
    reply = Reply(transport.value())
    assert reply.status == 400 and reply.body == b""


@pytest.mark.parametrize("status", [400, 408, 413, 414, 503])
def test_a_request_refused_before_it_runs_gets_200(status: int) -> None:
    """The channels' own refusals (a malformed head, a body too large...): 200 and the
    close, as the original answered everything."""
    server = Server(compat=True)
    assert Reply(refusal(status, "no", compat=True)).status == 200
    assert Reply(refusal(status, "no")).status == status
    transport, _ = server.ask(
        b"POST /db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999\r\n\r\n"
    )
    reply = Reply(transport.value())
    assert reply.status == 200 and b"over the limit" in reply.body
    assert reply.headers[b"content-type"] == COMPAT_JSON_TYPE


@pytest.mark.parametrize("channel", sorted(TARGETS))
def test_no_probe_for_a_client_that_half_closes(channel: str) -> None:
    """A client of the original that shuts its side down and reads until close would take
    the 100-continue probe for its answer: under compat none is sent."""
    server = Server(compat=True)
    transport, protocol = server.ask(get(TARGETS[channel] % b"pending"))
    protocol.readConnectionLost()
    assert PROBE not in transport.value()


# ------------------------------------------------------------------- without the setting


@pytest.mark.parametrize("channel", sorted(TARGETS))
def test_without_compat_nothing_changes(channel: str) -> None:
    server = Server(compat=False)
    transport, _ = server.ask(get(TARGETS[channel] % b"error"))
    reply = Reply(transport.value())
    assert reply.status == 400 and reply.headers[b"content-type"] == b"application/json"
    assert b"connection" not in reply.headers and not transport.disconnecting
    transport, _ = server.ask(get(TARGETS[channel] % b"stream"))
    reply = Reply(transport.value())
    assert reply.headers[b"transfer-encoding"] == b"chunked" and not transport.disconnecting
    transport, protocol = server.ask(get(TARGETS[channel] % b"pending"))
    protocol.readConnectionLost()
    assert PROBE in transport.value()


# ------------------------------------------------------------------------ the decisions


@pytest.mark.parametrize(
    "code, method, error, wire",
    [
        (400, b"GET", True, 200),
        (413, b"POST", True, 200),
        (429, b"GET", True, 200),
        (502, b"GET", True, 200),
        (500, b"GET", True, 200),
        (401, b"GET", True, 401),
        (404, b"GET", True, 404),
        (405, b"HEAD", True, 405),
        (503, b"GET", False, 503),  # (/ready: not an ERROR answer)
        (200, b"GET", True, 200),  # (an SQL error: 200 already)
    ],
)
def test_compat_status(code: int, method: bytes, error: bool, wire: int) -> None:
    assert compat_status(code, method, error) == wire


def test_compat_type() -> None:
    assert compat_type(b"application/json") == COMPAT_JSON_TYPE
    assert compat_type(b"Application/JSON; charset=utf-8") == COMPAT_JSON_TYPE
    for other in (b"text/xml; charset=utf-8", b"text/html; charset=utf-8", b"text/csv"):
        assert compat_type(other) == other
