"""Read your writes, the pure parts (gateway.position): GTID lists, merging, coverage, the
session-tracker rule that spares a plain write its reset, and the order a read with AFTER
tries the backends in."""

from __future__ import annotations

import pytest

from gateway.position import (
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    BadPosition,
    covers,
    format_gtids,
    merge,
    parse_gtids,
    read_order,
    read_tracked,
    wait_needed,
    wait_statement,
)


def test_parse_and_format() -> None:
    assert parse_gtids("1-2-7,0-1-1234") == ((0, 1, 1234), (1, 2, 7))  # (by domain)
    assert format_gtids(parse_gtids("1-2-7,0-1-1234")) == "0-1-1234,1-2-7"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0-1",
        "0-1-",
        "-1-2",
        "0-1-2,",
        ",0-1-2",
        "0-1-2 ",
        "0-1-2\n",
        "a-1-2",
        "0--1-2",
        "0-1-2;SELECT 1",
        "0-1-2') , SLEEP(10) -- ",
        "4294967296-1-2",
        "0-1-" + "9" * 21,
        ",".join(f"{d}-1-1" for d in range(65)),
    ],
)
def test_not_a_gtid_list(text: str) -> None:
    with pytest.raises(BadPosition):
        parse_gtids(text)


def test_merge_keeps_the_highest_per_domain() -> None:
    assert merge("0-1-5,1-2-9", "0-1-7") == "0-1-7,1-2-9"
    assert merge(None, "0-1-3") == "0-1-3" and merge("0-1-3", None) == "0-1-3"
    assert merge(None, None) is None
    assert merge("garbage", "0-1-3") == "0-1-3"


def test_covers() -> None:
    assert covers("0-1-10,1-2-3", "0-1-10")
    assert covers("0-1-10,1-2-3", "0-1-9,1-2-3")
    assert not covers("0-1-9", "0-1-10")
    assert not covers("0-1-10", "0-1-10,1-2-1")  # (a domain the server has not seen)
    assert not covers("", "0-1-1") and not covers(None, "0-1-1")


def test_a_plain_write_reports_only_its_position() -> None:
    entries = {SESSION_TRACK_SYSTEM_VARIABLES: [b"last_gtid", b"0-1-42"]}
    assert read_tracked(entries) == ("0-1-42", False)


@pytest.mark.parametrize(
    "entries",
    [
        {
            SESSION_TRACK_SYSTEM_VARIABLES: [b"last_gtid", b"0-1-42"],
            SESSION_TRACK_STATE_CHANGE: [b"1"],
        },
        {SESSION_TRACK_SYSTEM_VARIABLES: [b"last_gtid", b"0-1-42", b"autocommit", b"OFF"]},
        {SESSION_TRACK_SYSTEM_VARIABLES: [b"last_gtid"]},  # (not pairs: not understood)
        {1: [b"otherdb"]},  # (the schema changed)
        {SESSION_TRACK_STATE_CHANGE: [b"1"]},
    ],
)
def test_anything_else_is_a_change(entries: dict[int, list[bytes]]) -> None:
    assert read_tracked(entries)[1] is True


def test_read_order_and_waits() -> None:
    # primary-replica: best replica first, then the primary (which has every write it made)
    assert read_order("primary-replica", ["r1", "r2", "p"], "p") == ["r1", "p", "r2"]
    assert read_order("primary-replica", ["p", "r1"], "p")[0] == "p"
    assert read_order("pool", ["a", "b"], None) == ["a", "b"]
    assert not wait_needed("primary-replica", "p", "p")
    assert wait_needed("primary-replica", "r1", "p")
    assert not wait_needed("galera", "g1", None)
    assert wait_needed("pool", "a", None)


def test_wait_statement_is_built_from_the_parsed_position() -> None:
    assert wait_statement("1-2-7,0-1-5", 0.25) == "SELECT MASTER_GTID_WAIT('0-1-5,1-2-7', 0.250)"
    with pytest.raises(BadPosition):
        wait_statement("0-1-5'); DROP TABLE t; --", 1.0)
