"""/stats on a running gateway: JSON to scripts and to anything that does not prefer HTML (the
original's own statistics page among them), the HTML dashboard to a browser navigating to it,
and a Vary that names what the choice depends on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.servers import Gateway, raw_request

#: Request headers of real clients.
PROTOTYPE_PAGE = {  # htdocs/statchart.html of the original: Ajax.PeriodicalUpdater on /stats
    "X-Requested-With": "XMLHttpRequest",
    "X-Prototype-Version": "1.5.0",
    "Accept": "text/javascript, text/html, application/xml, text/xml, */*",
}
JQUERY = {
    "X-Requested-With": "XMLHttpRequest",
    "Accept": "application/json, text/javascript, */*; q=0.01",
}
NAVIGATION = {  # a browser following a link or typing the address (Fetch Metadata)
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "none",
}
PLAIN_HTTP_NAVIGATION = {  # the same browser where it sends no Sec-Fetch-* headers
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
}
DASHBOARD_FETCH = {  # the dashboard's own poll
    "Accept": "application/json",
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "same-origin",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("demo")).start()
    yield gw
    gw.stop()


@pytest.mark.parametrize(
    "headers",
    [PROTOTYPE_PAGE, JQUERY, DASHBOARD_FETCH, {"Accept": "*/*"}, {}],
    ids=["prototype", "jquery", "dashboard-fetch", "curl", "no-accept"],
)
def test_scripts_and_clients_get_json(demo: Gateway, headers: dict[str, str]) -> None:
    reply = raw_request(demo.port, "GET", "/stats", headers)
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    stats = json.loads(reply.body)
    assert {"current_time", "hits", "slices", "start_time", "total_requests"} <= set(stats)
    assert reply.headers["Vary"] == "Accept, Sec-Fetch-Dest, X-Requested-With"


@pytest.mark.parametrize(
    "headers", [NAVIGATION, PLAIN_HTTP_NAVIGATION], ids=["fetch-metadata", "plain-http"]
)
def test_a_browser_navigating_gets_the_dashboard(demo: Gateway, headers: dict[str, str]) -> None:
    reply = raw_request(demo.port, "GET", "/stats", headers)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert reply.body.lstrip().lower().startswith(b"<!doctype html>")
    assert reply.headers["Vary"] == "Accept, Sec-Fetch-Dest, X-Requested-With"


def test_the_page_never_goes_to_a_script(demo: Gateway) -> None:
    """Even a script that names text/html first, or sends Sec-Fetch-Dest: document."""
    headers = {**NAVIGATION, "X-Requested-With": "XMLHttpRequest"}
    reply = raw_request(demo.port, "GET", "/stats", headers)
    assert reply.headers["Content-Type"] == "application/json"
