"""/stats: the HTML dashboard only for a browser navigating to it, JSON for everything else
(api.http.prefers_page, accept_ranked, add_vary)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.web.test.requesthelper import DummyRequest

from api.fastpath import FastRequest
from api.http import PAGE_OR_JSON_VARY, accept_ranked, add_vary, prefers_page

#: What real clients send.
FIREFOX = b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME = (
    b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
#: Prototype.js's Ajax.Request (the original's statistics page, htdocs/statchart.html).
PROTOTYPE = b"text/javascript, text/html, application/xml, text/xml, */*"
#: jQuery's $.getJSON / $.ajax with dataType json.
JQUERY_JSON = b"application/json, text/javascript, */*; q=0.01"


@pytest.mark.parametrize(
    "accept, dest, xrw, page",
    [
        (FIREFOX, b"document", None, True),  # a browser navigating (Fetch Metadata)
        (FIREFOX, None, None, True),  # one without Fetch Metadata (plain HTTP to a host)
        (CHROME, None, None, True),
        (b"*/*", b"document", None, True),
        (PROTOTYPE, None, b"XMLHttpRequest", False),  # the original's own page
        (PROTOTYPE, None, None, False),  # text/javascript ranks first
        (FIREFOX, b"document", b"XMLHttpRequest", False),  # a script, whatever else it says
        (JQUERY_JSON, b"empty", b"XMLHttpRequest", False),
        (b"*/*", None, None, False),  # curl
        (None, None, None, False),  # no Accept at all
        (b"application/json", None, None, False),
        (b"text/html;q=0.5, application/json", None, None, False),  # q-values respected
        (b"application/json;q=0.4, text/html;q=0.6", None, None, True),
        (b"application/json, text/html", None, None, False),  # equal q: the first listed
        (b"text/html, application/json", None, None, True),
        (b"text/html;q=0, */*", None, None, False),  # q=0: not acceptable
        (b"text/html;q=oops, application/json", None, None, False),
        (b"text/*", None, None, False),
        (b"application/xhtml+xml", None, None, True),
        (b"Text/HTML", None, None, True),
        (b"text/html", b"empty", None, False),  # a fetch asking for HTML first: no navigation
    ],
)
def test_prefers_page(
    accept: bytes | None, dest: bytes | None, xrw: bytes | None, page: bool
) -> None:
    assert prefers_page(accept, dest, xrw) is page


def test_accept_ranked_sorts_by_q_then_order() -> None:
    ranked = accept_ranked("a/a;q=0.5, b/b, c/c;level=1;q=0.9, d/d;q=0, e/e;q=2, f/f")
    assert ranked == ["b/b", "f/f", "c/c", "a/a"]
    assert accept_ranked("") == [] and accept_ranked(" , ,") == []


def test_accept_ranked_bounds_its_work() -> None:
    ranked = accept_ranked(", ".join(f"x/{i}" for i in range(100_000)))
    assert len(ranked) == 64 and ranked[0] == "x/0"


def fast_request() -> Any:
    return FastRequest(None, b"GET", b"/stats", b"/stats", b"", b"HTTP/1.1", {}, b"", True, 0.0)  # type: ignore[arg-type]


def test_add_vary_keeps_what_is_there_on_either_kind_of_request() -> None:
    for request in (DummyRequest([b"stats"]), fast_request()):
        request.setHeader(b"Vary", b"Origin")
        add_vary(request, PAGE_OR_JSON_VARY)
        add_vary(request, (b"accept",))  # (already there, in any case)
        if isinstance(request, FastRequest):
            value = request.response_headers[b"vary"][1]
        else:
            value = (request.responseHeaders.getRawHeaders(b"vary") or [b""])[0]
        assert value == b"Origin, Accept, Sec-Fetch-Dest, X-Requested-With"


def test_fetch_metadata_is_trusted_over_accept() -> None:
    """A fetch() or an <img> that sends Accept: text/html first is still no navigation: with
    Sec-Fetch-Dest present, only document (and iframe) get the page."""
    from api.http import prefers_page

    assert not prefers_page(b"text/html", b"empty", None)
    assert not prefers_page(b"text/html,*/*", b"image", None)
    assert prefers_page(b"*/*", b"document", None)
    assert prefers_page(b"text/html", b"iframe", None)
    assert prefers_page(b"text/html", None, None)  # (no Fetch Metadata: Accept decides)
