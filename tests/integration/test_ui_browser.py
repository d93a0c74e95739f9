"""`alto-stream ui` in a real headless Chromium, against a real broker and a running app.

The app (tests/integration/ui_app.py) runs under `alto-stream up` with metrics
ports; the view runs as `alto-stream ui` on a free port. The test checks what a
person would look at: the graph has a node for every stage, with figures; a
pushed query appears, finishes and opens its waterfall; a query that fails
sends its record to a dead-letter topic, which appears with its reason, and
once the "bug" is fixed the replay button replays it and the replayed query
completes (checked on Kafka too). Screenshots go to .alto/screenshots/ (set
ALTO_SCREENSHOTS to change it): look at them.

Chromium is Debian's (/usr/bin/chromium, installed by `make setup`), driven by
playwright's Python package; the test is skipped, with one message, only when
it cannot be launched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_app import APP

from alto_stream.client import Client
from alto_stream.ops.loading import load_app
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.testing import free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ALTO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 60_000  # ms: a slow, shared machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Chromium context with a fresh profile; skips (one message) when none can start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests: the playwright package is missing (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"browser tests: no Chromium at {CHROMIUM} (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1500, "height": 1000},
            )  # fmt: skip
        except Exception as exc:  # any failure to launch: the one reason to skip
            pytest.skip(f"browser tests: Chromium at {CHROMIUM} does not start: {exc}")
        try:
            yield context
        finally:
            context.close()


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def test_the_page_shows_the_app_and_replays_a_dead_letter(
    kafka_bootstrap: str,
    tmp_path: Path,
    browser: Any,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    shots = Path(os.environ.get("ALTO_SCREENSHOTS", ROOT / ".alto" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    name = unique_name("uib")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    flag = tmp_path / "broken"
    flag.touch()
    ref, ready, metrics = f"{module}:app", tmp_path / "ready", free_ports(4, host="0.0.0.0")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALTO_UI_FAIL_FILE": str(flag),
    }
    cli = [sys.executable, "-m", "alto_stream.cli"]
    up = subprocess.Popen(
        [*cli, "up", ref, "--json", "--log-dir", str(tmp_path / "run"), "--ready-file", str(ready),
         "--metrics-base-port", str(metrics)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ui = subprocess.Popen(
        [*cli, "ui", ref, "--port", "0", "--metrics", f"127.0.0.1:{metrics}-{metrics + 3}"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ui.stdout is not None
        url = ui.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, ui.poll())
        deadline = time.monotonic() + 150
        while not ready.exists():
            assert up.poll() is None, _stop(up)
            assert time.monotonic() < deadline, "up never said ready"
            time.sleep(0.2)
        _check_page(browser.new_page(), url, ref, kafka_bootstrap, flag, shots, env)
    finally:
        ui_err, up_err = _stop(ui), _stop(up)
    # SIGTERM with the page's event stream still open: it ends cleanly, exit 0 (uvicorn
    # on its own raises the signal again once it has shut down: exit 143)
    assert ui.returncode == 0, (ui.returncode, ui_err)
    assert "Traceback" not in ui_err, ui_err
    assert up.returncode == 0, up_err


def _check_page(
    page: Any, url: str, ref: str, bootstrap: str, flag: Path, shots: Path, env: dict[str, str]
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    stages = ["check", "words", "shout", "joined"]
    for stage in stages:  # every stage a node of the SVG graph, with its live figures
        page.wait_for_selector(f"#graph-svg g.node[data-id='{stage}']", timeout=WAIT)
    page.wait_for_selector("#live:not(.off)", timeout=WAIT)
    # replicas come from the workers' metrics pages: one each
    page.wait_for_selector("#graph-svg g.node[data-id='shout'][data-replicas='1']", timeout=WAIT)
    assert page.locator("#graph-svg g.node").count() == len(stages) + 2  # input and output topics

    pushed = subprocess.run(
        [sys.executable, "-m", "alto_stream.cli", "push", ref, "hello there skip world"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()[-1]  # fmt: skip
    row = page.locator(f"tr.query[data-id='{pushed}']")
    row.wait_for(timeout=WAIT)
    page.wait_for_selector(f"tr.query[data-id='{pushed}'][data-status='done']", timeout=WAIT)
    row.click()
    page.wait_for_selector(f"#waterfall-svg[data-query='{pushed}']", timeout=WAIT)
    waterfall = page.locator("#waterfall-svg")
    # the query, its check, four words (one dropped by the filter: a skip marker) and joined
    assert waterfall.locator("rect.bar[data-stage='shout']").count() == 3
    assert waterfall.locator(".marker.skip").count() == 1
    assert waterfall.locator("rect.bar.critical").count() >= 4
    assert waterfall.locator(".critical-line").count() == 1
    assert "HELLO THERE WORLD" in page.locator("#waterfall-records").inner_text()
    page.mouse.move(0, 0)
    page.screenshot(path=str(shots / "ui-waterfall.png"), full_page=True)

    page.fill("#push-text", "boom goes it")  # pushed from the page: fails at `check`
    page.click("#push-form button")
    letter = page.locator("tr.letter").first
    letter.wait_for(timeout=WAIT)
    failed = letter.get_attribute("data-query")
    assert failed and failed != pushed
    assert "boom is not allowed" in letter.inner_text()
    page.wait_for_selector(f"tr.query[data-id='{failed}'][data-status='error']", timeout=WAIT)

    flag.unlink()  # the bug is fixed: the replay goes through
    since = time.time() - 1.0
    letter.locator("button.replay").click()
    status = letter.locator(".replay-status")
    status.wait_for(timeout=WAIT)
    replay_id = status.get_attribute("data-query")
    assert replay_id and replay_id != failed
    page.wait_for_selector(
        f".replay-status[data-query='{replay_id}'][data-status='done']", timeout=WAIT
    )
    page.wait_for_selector(f"tr.query[data-id='{replay_id}'][data-status='done']", timeout=WAIT)
    page.locator(f"tr.query[data-id='{replay_id}']").click()
    page.wait_for_selector(f"#waterfall-svg[data-query='{replay_id}']", timeout=WAIT)
    page.mouse.move(0, 0)
    page.screenshot(path=str(shots / "ui-replayed.png"), full_page=True)
    assert errors == []

    async def final() -> Any:  # on Kafka itself: the replay's own result, linked to the original
        async with Client(load_app(ref), KafkaTransport(bootstrap)) as client:
            results = [r async for r in client.follow([replay_id], timeout=60, since=since)]
        return results[-1]

    # playwright's sync API runs an event loop in this thread: Kafka is read from another
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, final()).result()
    assert result.value == {"text": "BOOM GOES IT"}
    assert result.envelope.ancestry.replay_of == failed


def test_the_page_says_when_kafka_is_unreachable_and_when_it_is_back(
    tmp_path: Path, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in a soak: for 40 s of a broker outage the page showed the figures of before
    # it as live (its "live" badge is the page's link to this server, not Kafka's).
    # A broker of its own, stopped and restarted: about 60 s.
    from alto_stream import broker
    from alto_stream.testing import unique_name

    cluster = broker.start(port=0, data_dir=tmp_path / "bk")
    name = unique_name("uistale")
    module = "m_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(APP.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "ALTO_BOOTSTRAP_SERVERS": cluster.bootstrap,
    }
    ui = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "ui", f"{module}:app", "--port", "0"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ui.stdout is not None
        url = ui.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, ui.poll())
        deadline = time.monotonic() + 30
        while True:  # the address is printed as the server starts listening
            try:
                urllib.request.urlopen(url + "api/graph", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, "the view never answered"
                time.sleep(0.2)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#graph-svg g.node[data-id='shout']", timeout=WAIT)
        page.wait_for_selector("#live:not(.off)", timeout=WAIT)
        assert page.locator("#kafka").is_hidden()
        broker.stop(tmp_path / "bk")
        page.wait_for_selector("#kafka:not([hidden])", timeout=WAIT)
        assert page.locator("#live").text_content() == "live"  # the page still reaches the view
        page.wait_for_function(
            "document.querySelector('#kafka').textContent.startsWith('Kafka unreachable since')",
            timeout=WAIT,
        )
        assert page.locator("#graph.stale").count() == 1
        broker.start(data_dir=tmp_path / "bk")
        page.wait_for_selector("#kafka[hidden]", state="attached", timeout=WAIT)
        assert page.locator("#graph.stale").count() == 0
    finally:
        _stop(ui)
        broker.stop(tmp_path / "bk")
