"""An app's workers spread over three hosts (network namespaces), the broker on a fourth.

The hosts are Linux network namespaces on a private switch
(:mod:`benchmarks.netns`, addresses 10.251.0.1-4, nothing else reachable).
The broker starts in host 4 with ``broker start --host 10.251.0.4``; workers
start in hosts 1-3 with ``ip netns exec``; a client in one host pushes the
queries and follows them; another host reads every topic back. Skipped, with
the reason, where namespaces cannot be made (not root, no ``ip``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import netns
from benchmarks.hosts import Deployment, app_module, broker_on, docs_of
from benchmarks.hosts_app import reference

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

STAGES = ("words", "shout", "joined")
WARM_UP = docs_of(6, 2, "warm")


@pytest.fixture(scope="module")
def net() -> Iterator[netns.Hosts]:
    try:
        with netns.hosts(4) as made:
            yield made
    except netns.NetnsUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def bootstrap(net: netns.Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker in host 4, listening on and advertising 10.251.0.4."""
    with broker_on(net, 4, tmp_path_factory.mktemp("hosts-broker")) as server:
        assert server.startswith("10.251.0.4:")
        yield server


def _deployment(
    net: netns.Hosts,
    bootstrap: str,
    path: Path,
    unique_name: Callable[[str], str],
    *,
    delay: float,
    in_flight: int,
    delivery: str,
) -> Deployment:
    module = app_module(path, unique_name("hosts"), delay, in_flight)
    return Deployment(net, bootstrap, path, module, delivery)


def _check_topics(
    dumped: dict[str, Any], docs: list[dict[str, str]], finals: list[dict[str, Any]], delivery: str
) -> None:
    """Every query once on the output topic (by id, see docs/faults.md), right, no dead letter."""
    (records,) = dumped["records"].values()
    finals_on_topic = [r for r in records if r[1] == 0]
    by_id: dict[str, set[str]] = {}
    for record_id, _, value in finals_on_topic:
        by_id.setdefault(record_id, set()).add(json.dumps(value, sort_keys=True))
    assert set(by_id) == {f["query_id"] for f in finals}
    assert all(len(values) == 1 for values in by_id.values()), "a query got two answers"
    assert sorted(json.loads(v.pop())["text"] for v in by_id.values()) == sorted(
        reference(d["text"]) for d in docs
    )
    if delivery == "transactional":
        assert len(finals_on_topic) == len(docs), "read_committed output holds a duplicate"
    dead = {t: n for t, n in dumped["counts"].items() if t.endswith(".dlq") and n}
    assert not dead, f"dead letters: {dead}"


@pytest.mark.parametrize("delivery", ["at-least-once", "transactional"])
def test_workers_on_three_hosts_give_the_one_host_results(
    net: netns.Hosts,
    bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    delivery: str,
) -> None:
    deployment = _deployment(
        net, bootstrap, tmp_path, unique_name, delay=0.02, in_flight=4, delivery=delivery
    )
    docs = docs_of(24, 6)
    deployment.start(
        {1: ("words", "shout"), 2: ("shout", "joined"), 3: ("words", "shout", "joined")}
    )
    try:
        pusher = deployment.push(2, docs)
        done = pusher.wait(timeout=400)
        assert not deployment.exited(), "\n".join(deployment.exited())
    finally:
        deployment.stop()
    finals = pusher.finals()
    assert done["done"] == len(docs)
    assert all(f["ok"] for f in finals)
    assert sorted(f["text"] for f in finals) == sorted(reference(d["text"]) for d in docs)
    _check_topics(deployment.dump(3), docs, finals, delivery)


SESSION_TIMEOUT = 6.0  # the default ALTO_SESSION_TIMEOUT
CLIENT_REQUEST_TIMEOUT = 40.0  # aiokafka's request_timeout_ms: a request with no answer fails


def _run_with_a_cut(
    deployment: Deployment, docs: list[dict[str, str]], cut_seconds: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every stage on hosts 1-3; host 2 cut off after the first final; (finals, exited).

    A warm-up batch goes through first (every worker joined), so that the cut
    falls in the middle of the real batch; its finals are returned too.
    """
    deployment.start(dict.fromkeys((1, 2, 3), STAGES))
    try:
        warm = deployment.push(1, WARM_UP, name="warm")
        warm.wait(timeout=400)
        pusher = deployment.push(1, docs)
        deadline = time.monotonic() + 300
        while not pusher.finals() and pusher.proc.poll() is None:
            assert time.monotonic() < deadline, "no query finished before the cut"
            time.sleep(0.2)
        cut_at = time.time()
        deployment.net.cut(2)
        try:
            time.sleep(cut_seconds)
        finally:
            deployment.net.restore(2)
        restored_at = time.time()
        done = pusher.wait(timeout=400)
        time.sleep(5)  # host 2's workers are back on the wire: they must keep running
        exited = deployment.exited()
    finally:
        deployment.stop()
    finals = pusher.finals()
    after_cut = [f for f in finals if f["at"] > cut_at]
    during_cut = [f for f in after_cut if f["at"] < restored_at]
    start = pusher.began_at
    print(
        f"cut at {cut_at - start:.1f} s, restored at {restored_at - start:.1f} s, done at "
        f"{max(f['at'] for f in finals) - start:.1f} s (from the push): {len(after_cut)} of "
        f"{len(finals)} finals after the cut began, {len(during_cut)} during it"
    )
    assert after_cut, "every query finished before the cut: it did not happen mid-run"
    assert done["done"] == len(docs)
    return warm.finals() + finals, exited


@pytest.mark.parametrize("delivery", ["transactional", "at-least-once"])
def test_a_host_cut_off_mid_run_loses_and_duplicates_nothing(
    net: netns.Hosts,
    bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    delivery: str,
) -> None:
    """A 15 s cut: longer than the session timeout (partitions move), shorter than requests'."""
    deployment = _deployment(
        net, bootstrap, tmp_path, unique_name, delay=0.2, in_flight=2, delivery=delivery
    )
    docs = docs_of(120, 8)
    finals, exited = _run_with_a_cut(deployment, docs, 15.0)
    docs = WARM_UP + docs
    assert all(f["ok"] for f in finals)
    assert sorted(f["text"] for f in finals) == sorted(reference(d["text"]) for d in docs)
    _check_topics(deployment.dump(3), docs, finals, delivery)
    assert not exited, "\n".join(exited)


def test_a_host_cut_off_longer_than_a_request_timeout_loses_and_duplicates_nothing(
    net: netns.Hosts, bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A 50 s cut, past aiokafka's 40 s request timeout: the cut-off workers' requests fail."""
    deployment = _deployment(
        net, bootstrap, tmp_path, unique_name, delay=0.2, in_flight=2, delivery="transactional"
    )
    docs = docs_of(120, 8)
    finals, exited = _run_with_a_cut(deployment, docs, CLIENT_REQUEST_TIMEOUT + 10)
    docs = WARM_UP + docs
    assert all(f["ok"] for f in finals)
    assert sorted(f["text"] for f in finals) == sorted(reference(d["text"]) for d in docs)
    _check_topics(deployment.dump(3), docs, finals, "transactional")
    if any("FATAL_ERROR -> " in text or "did not commit within" in text for text in exited):
        # Seen 2026-11-30: at the restore, a cut-off transactional worker stops, and its
        # shutdown commit begins a transaction on the fenced producer (aiokafka's
        # FATAL_ERROR -> IN_TRANSACTION assertion): it exits 1. Seen 2026-12-02 on a
        # loaded machine: its transaction, cut off, did not commit within the 30 s the
        # worker gives one (the 50 s cut is longer), and it stopped, exit 1, as it is
        # meant to. Nothing is lost or duplicated (checked above); a supervisor (`up`,
        # systemd) restarts it.
        pytest.xfail("a transactional worker cut off for 50 s exits 1 at the restore")
    assert not exited, "\n".join(exited)
