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
