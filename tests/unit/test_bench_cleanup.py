"""The bench stops every process it started, however it ends (SIGTERM, SIGINT, a failed start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alto_stream.app import Topology
from alto_stream.errors import AltoError

ROOT = Path(__file__).resolve().parents[2]

# A run as the bench's: the emulated engine, and an `up`-like child with a worker of its
# own (a grandchild in its group), then a load that waits; it prints the pids, then waits.
RUN = textwrap.dedent(
    """
    import asyncio, sys
    from alto_stream.ops import eventloop
    from benchmarks.systems import EngineProcess
    from benchmarks.systems.process import spawn, stop, stop_on_sigterm

    UP = "import subprocess, sys, time; w = subprocess.Popen([sys.executable, '-c', "
    UP += "'import time; time.sleep(300)']); print(w.pid, flush=True); time.sleep(300)"

    async def main():
        async with EngineProcess() as engine:
            up = spawn([sys.executable, "-c", UP], log=None)
            print(engine._process.pid, up.pid, flush=True)
            if sys.argv[1] == "fail":  # an error that skips stopping `up`: the exit still does
                await asyncio.sleep(2)
                raise RuntimeError("worker x failed to start 3 times")
            try:
                await asyncio.sleep(300)
            finally:
                await stop(up)

    with stop_on_sigterm():
        eventloop.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def _worker_pid(log: Path) -> int:
    return int(log.read_text().split()[0])


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "fail"])
def test_no_child_of_the_bench_survives_it(how: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bench = subprocess.Popen(
        [sys.executable, "-c", RUN, how],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bench.stdout is not None
        engine, up = (int(x) for x in bench.stdout.readline().split())
        children = [engine, up]
        deadline = time.monotonic() + 10
        while len(children) < 3 and time.monotonic() < deadline:
            children += _grandchildren(up)
            time.sleep(0.1)
        assert len(children) == 3, "the up-like child did not start its worker"
        if how != "fail":
            bench.send_signal(getattr(signal, how))  # the bench alone, not its group
        bench.wait(30)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if bench.poll() is None:
            bench.kill()


def _grandchildren(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ")[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_a_system_that_fails_to_start_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` started, then a worker failed to start: the run still closes the system."""
    from contextlib import asynccontextmanager

    from benchmarks import sidebyside

    closed: list[bool] = []

    class Failing:
        name = "failing"

        async def start(self) -> None:
            raise AltoError("worker score-0 failed to start 3 times")

        async def close(self) -> None:
            closed.append(True)

    @asynccontextmanager
    async def engine(options: object):  # type: ignore[no-untyped-def]
        yield sidebyside.Engine("http://127.0.0.1:1/v1", "emulated", {})

    monkeypatch.setattr(sidebyside, "resolve", lambda name: lambda config, bootstrap: Failing())
    monkeypatch.setattr(sidebyside, "engine", engine)
    with pytest.raises(AltoError, match="failed to start"):
        await sidebyside.run(sidebyside.BenchOptions(app="rag"))
    assert closed == [True]


@pytest.mark.parametrize("keep", [False, True])
async def test_an_alto_run_deletes_its_topics_unless_kept(
    monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    from benchmarks.systems import alto
    from benchmarks.systems.base import BenchConfig

    deleted: list[str] = []

    async def delete_app_topics(ops: object, topology: Topology, *, force: bool) -> list[str]:
        assert force  # the workers were just stopped: their members may not have left yet
        deleted.append(topology.app)
        return ["x"]

    monkeypatch.setattr(alto, "delete_app_topics", delete_app_topics)
    system = alto.AltoSystem(BenchConfig(app="rag", keep_topics=keep), "127.0.0.1:1")
    assert system.topology.app == system.app_name  # loaded, as start() does
    await system.close()
    assert deleted == ([] if keep else [system.app_name])
