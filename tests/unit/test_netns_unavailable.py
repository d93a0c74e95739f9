"""Where network namespaces cannot be made, the hosts tests get one clear reason to skip."""

from __future__ import annotations

import pytest

from benchmarks import netns


def test_not_root_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsUnavailableError, match="this needs root"), netns.hosts(4):
        pass


def test_no_ip_command_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    unavailable = pytest.raises(netns.NetnsUnavailableError, match=r"`ip` command \(iproute2\)")
    with unavailable, netns.hosts(4):
        pass
