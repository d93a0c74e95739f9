"""Which event loop worker processes run on."""

from __future__ import annotations

import asyncio

import pytest

from alto_stream.errors import ConfigError
from alto_stream.ops import eventloop


async def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_the_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv("ALTO_EVENT_LOOP", raising=False)
    assert eventloop.chosen_loop() == "uvloop"
    assert eventloop.run(_loop_name()).startswith("uvloop")


def test_asyncio_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTO_EVENT_LOOP", "asyncio")
    assert eventloop.chosen_loop() == "asyncio"
    assert eventloop.run(_loop_name()).startswith("asyncio")


def test_an_unknown_loop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTO_EVENT_LOOP", "trio")
    coro = _loop_name()
    with pytest.raises(ConfigError, match="must be 'uvloop' or 'asyncio', got 'trio'"):
        eventloop.run(coro)
    assert coro.cr_frame is None  # closed, never started


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_asyncio_is_the_default_over_tls(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    # Found by a new user on SASL_SSL: uvloop waited its 30 s SSL shutdown time-out on
    # a consumer's close, so changelog restores, lag probes and `push --follow` each
    # took 30 s more (8 of 14 reads of one partition here; none on asyncio).
    pytest.importorskip("uvloop")
    monkeypatch.delenv("ALTO_EVENT_LOOP", raising=False)
    monkeypatch.setenv("ALTO_SECURITY_PROTOCOL", protocol)
    if protocol.startswith("SASL"):
        monkeypatch.setenv("ALTO_SASL_USERNAME", "u")
        monkeypatch.setenv("ALTO_SASL_PASSWORD", "p")
        monkeypatch.setenv("ALTO_SASL_MECHANISM", "PLAIN")
    assert eventloop.chosen_loop() == "asyncio"
    monkeypatch.setenv("ALTO_EVENT_LOOP", "uvloop")  # asked for: still uvloop
    assert eventloop.chosen_loop() == "uvloop"
    monkeypatch.delenv("ALTO_EVENT_LOOP")
    monkeypatch.setenv("ALTO_SECURITY_PROTOCOL", protocol.replace("SSL", "PLAINTEXT"))
    assert eventloop.chosen_loop() == "uvloop"  # no TLS
