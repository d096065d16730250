"""URL rules of protocol §1.1-§1.4 and the connection-target split used by the transport."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from simtrio.errors import InvalidParams
from simtrio.wire.urls import (
    host_header,
    http_base_from_ws_url,
    http_to_ws_url,
    normalize_control_url,
    resolve_rpc_url,
    split_ws_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sim.example.net", "wss://sim.example.net/backtest"),
        ("127.0.0.1:7000", "wss://127.0.0.1:7000/backtest"),
        ("ws://127.0.0.1:7000/", "ws://127.0.0.1:7000/backtest"),
        ("ws://127.0.0.1:7000", "ws://127.0.0.1:7000/backtest"),
        ("wss://h.example/backtest", "wss://h.example/backtest"),
        ("wss://h.example/backtest///", "wss://h.example/backtest"),
        ("wss://h.example/api/", "wss://h.example/api/backtest"),
        ("h.example/backtest/", "wss://h.example/backtest"),
        ("https://h.example", "https://h.example"),
        ("http://h.example/backtest/", "http://h.example/backtest/"),
    ],
)
def test_normalize_control_url_examples(url: str, expected: str) -> None:
    assert normalize_control_url(url) == expected


_url_parts = st.tuples(
    st.sampled_from(["", "ws://", "wss://", "http://", "https://", "ftp://", "ws:/", "://"]),
    st.text(alphabet="ab:/.?#[]@1", max_size=20),
    st.sampled_from(["", "/", "//", "/backtest", "/backtest/", "backtest", "/x/backtest//"]),
)


@settings(max_examples=300)
@given(_url_parts)
def test_normalize_control_url_is_idempotent(parts: tuple[str, str, str]) -> None:
    url = "".join(parts)
    once = normalize_control_url(url)
    assert normalize_control_url(once) == once
    if "://" not in url or url.startswith(("ws://", "wss://")):
        assert once.startswith(("ws://", "wss://"))
        assert once.endswith("/backtest")
    else:
        assert once == url


@settings(max_examples=200)
@given(st.text(max_size=30))
def test_normalize_control_url_is_idempotent_on_any_text(url: str) -> None:
    once = normalize_control_url(url)
    assert normalize_control_url(once) == once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://h.example:8443/backtest", "https://h.example:8443"),
        ("ws://127.0.0.1:7000", "http://127.0.0.1:7000"),
        ("ws://127.0.0.1:7000/backtest", "http://127.0.0.1:7000"),
        ("wss://h.example/a/b/backtest", "https://h.example"),
        ("wss://h.example/", "https://h.example"),
    ],
)
def test_http_base_from_ws_url(url: str, expected: str) -> None:
    assert http_base_from_ws_url(url) == expected


@pytest.mark.parametrize(
    ("base", "endpoint", "expected"),
    [
        (
            "https://h.example",
            "/backtest/backtest_5d1c",
            "https://h.example/backtest/backtest_5d1c",
        ),
        ("http://127.0.0.1:7000", "backtest/x", "http://127.0.0.1:7000/backtest/x"),
        ("http://127.0.0.1:7000", "///backtest/x", "http://127.0.0.1:7000/backtest/x"),
        ("https://h.example", "http://10.0.0.5:9000/s1", "http://10.0.0.5:9000/s1"),
        ("http://h.example", "https://other.example/s?x=1", "https://other.example/s?x=1"),
    ],
)
def test_resolve_rpc_url(base: str, endpoint: str, expected: str) -> None:
    assert resolve_rpc_url(base, endpoint) == expected


def test_control_url_to_data_plane_url_chain() -> None:
    base = http_base_from_ws_url(normalize_control_url("sim.example.net"))
    rpc = resolve_rpc_url(base, "/backtest/backtest_5d1c")
    assert http_to_ws_url(rpc) == "wss://sim.example.net/backtest/backtest_5d1c"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/backtest/s1", "wss://h.example/backtest/s1"),
        ("http://127.0.0.1:7000/backtest/s1?a=b", "ws://127.0.0.1:7000/backtest/s1?a=b"),
        ("http://127.0.0.1:7000", "ws://127.0.0.1:7000"),
        ("http://[::1]:9/x", "ws://[::1]:9/x"),
    ],
)
def test_http_to_ws_url(url: str, expected: str) -> None:
    assert http_to_ws_url(url) == expected


@pytest.mark.parametrize("url", ["ws://h.example/x", "ftp://h", "h.example/x", "", "HTTP://h"])
def test_http_to_ws_url_rejects_other_schemes(url: str) -> None:
    with pytest.raises(InvalidParams) as info:
        http_to_ws_url(url)
    assert str(info.value) == (
        f"cannot derive WebSocket URL from `{url}`: expected http:// or https:// scheme"
    )


@given(st.sampled_from(["http://", "https://"]), st.text(max_size=30))
def test_http_to_ws_url_keeps_everything_after_the_scheme(scheme: str, rest: str) -> None:
    converted = http_to_ws_url(scheme + rest)
    assert converted == ("wss://" if scheme == "https://" else "ws://") + rest


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:7000", (False, "127.0.0.1", 7000, "/")),
        ("ws://127.0.0.1:7000/", (False, "127.0.0.1", 7000, "/")),
        ("wss://h.example/backtest", (True, "h.example", 443, "/backtest")),
        ("ws://h.example/backtest/s1", (False, "h.example", 80, "/backtest/s1")),
        ("wss://h.example:8443/a?b=c&d=/e", (True, "h.example", 8443, "/a?b=c&d=/e")),
        ("ws://h.example?x=1", (False, "h.example", 80, "/?x=1")),
        ("ws://h.example/p#frag", (False, "h.example", 80, "/p")),
        ("ws://h.example:/p", (False, "h.example", 80, "/p")),
        ("ws://[::1]:8080/a", (False, "::1", 8080, "/a")),
        ("wss://[2001:db8::1]", (True, "2001:db8::1", 443, "/")),
        ("WSS://H.example/x", (True, "H.example", 443, "/x")),
    ],
)
def test_split_ws_url(url: str, expected: tuple[bool, str, int, str]) -> None:
    assert split_ws_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://h.example/",
        "h.example",
        "ws://",
        "ws:///backtest",
        "ws://:80/",
        "ws://h.example:0/",
        "ws://h.example:65536/",
        "ws://h.example:port/",
        "ws://h.example:-1/",
        "ws://h.example:\u0661\u0662/",
        "ws://[::1/",
        "ws://[::1]x/",
        "ws://user:secret@h.example/",
    ],
)
def test_split_ws_url_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(InvalidParams) as info:
        split_ws_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "port", "secure", "expected"),
    [
        ("h.example", 80, False, "h.example"),
        ("h.example", 443, True, "h.example"),
        ("h.example", 443, False, "h.example:443"),
        ("127.0.0.1", 7000, False, "127.0.0.1:7000"),
        ("::1", 8080, False, "[::1]:8080"),
        ("::1", 443, True, "[::1]"),
    ],
)
def test_host_header(host: str, port: int, secure: bool, expected: str) -> None:
    assert host_header(host, port, secure) == expected


@given(
    st.booleans(),
    st.sampled_from(["h.example", "127.0.0.1", "[::1]", "[fe80::2]"]),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.sampled_from(["", "/", "/backtest/s1", "?q=1", "/a?b=/c"]),
)
def test_split_ws_url_round_trips_through_host_header(
    secure: bool, authority_host: str, port: int | None, path: str
) -> None:
    url = ("wss://" if secure else "ws://") + authority_host
    url += "" if port is None else f":{port}"
    url += path
    got_secure, host, got_port, target = split_ws_url(url)
    assert got_secure is secure
    assert host == authority_host.strip("[]")
    assert got_port == (port if port is not None else (443 if secure else 80))
    assert target.startswith("/")
    assert target.lstrip("/") == path.lstrip("/")
    header = host_header(host, got_port, secure)
    assert split_ws_url(("wss://" if secure else "ws://") + header)[1:3] == (host, got_port)
