"""The runtime's header table, driven through plughost.Exchange: matching, validation and
replacement rules every plugin relies on (ph_header_get/set/add/remove)."""

from __future__ import annotations

from typing import Iterator

import pytest

from plughost.sdk.exchange import Exchange
from plughost.loading.loader import Host


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    host = Host()
    with Exchange(
        host.runtime, host.ptr, headers=[("host", "example"), ("x-trace", "a"), ("accept", "*/*")]
    ) as ex:
        yield ex
    host.close()


def test_names_match_ascii_case_insensitively(exchange: Exchange) -> None:
    assert exchange.request_header("X-TRACE") == "a"
    assert exchange.request_header("x-Trace") == "a"


def test_names_of_other_lengths_or_other_characters_do_not_match(exchange: Exchange) -> None:
    assert exchange.request_header("x-trac") is None
    assert exchange.request_header("x-traces") is None
    assert exchange.request_header("x_trace") is None  # '_' is not '-' in another case
    assert exchange.request_header("") is None


def test_set_replaces_the_first_in_place_and_drops_the_others(exchange: Exchange) -> None:
    exchange.add_response_header("Set-Thing", "1")
    exchange.add_response_header("other", "x")
    exchange.add_response_header("set-thing", "2")
    exchange.set_response_header("SET-THING", "3")
    assert exchange.response_headers == [("Set-Thing", "3"), ("other", "x")]


def test_invalid_names_and_values_are_refused_with_a_reason(exchange: Exchange) -> None:
    with pytest.raises(ValueError, match="invalid header name 'bad name'"):
        exchange.set_response_header("bad name", "v")
    with pytest.raises(ValueError, match="control characters such as CR or LF"):
        exchange.set_response_header("x-ok", "a\r\nInjected: yes")
    with pytest.raises(ValueError, match="control characters"):
        exchange.set_response_header("x-ok", "del\x7f")
    assert exchange.response_header("x-ok") is None


def test_tab_and_obs_text_are_allowed_in_values(exchange: Exchange) -> None:
    exchange.set_response_header("x-ok", "a\tb \xe9")
    assert exchange.response_header("x-ok") == "a\tb \xe9"
