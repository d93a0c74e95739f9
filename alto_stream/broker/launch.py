"""Bringing a local cluster's nodes up: their files written, storage formatted, JVMs launched.

:func:`write_config` writes each node's ``server.properties`` (secured ones
readable by their owner only) and the shared log4j2 file; :func:`format_storage`
formats the nodes not formatted yet, one JVM each, in parallel; :func:`launch`
starts one node's Kafka in a session of its own; :func:`wait_ready` waits until
every broker answers metadata requests, or says which node died. The cluster's
start, stop and status are :mod:`alto_stream.broker.cluster`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from alto_stream.broker.config import Layout, jvm_options, log4j2_properties, server_properties
from alto_stream.broker.nodes import NodeFiles, process_alive, remember_child
from alto_stream.broker.probe import fetch_metadata
from alto_stream.broker.secured import SecureProfile, secure_properties
from alto_stream.errors import BrokerError

__all__ = ["POLL", "format_storage", "launch", "wait_ready", "write_config"]

POLL = 0.2
"""Seconds between two looks at the nodes while they start or stop."""


def write_config(layout: Layout, data_dir: Path, profile: SecureProfile | None = None) -> Path:
    layout.save(data_dir)
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(log4j2_properties())
    for node_id in layout.node_ids():
        files = NodeFiles(data_dir, node_id)
        files.data.mkdir(parents=True, exist_ok=True)
        files.logs.mkdir(parents=True, exist_ok=True)
        properties = server_properties(layout, node_id, files.data)
        if profile is not None:
            properties = secure_properties(properties, profile, node_id)
            files.properties.touch(mode=0o600)  # SASL PLAIN's passwords are in it
            files.properties.chmod(0o600)
        files.properties.write_text(properties)
    return log4j


def format_storage(
    java: Path, libs: Path, layout: Layout, data_dir: Path, log4j: Path, extra: list[str]
) -> None:
    """Format the storage of every node not yet formatted (in parallel: one JVM each).

    ``extra`` (SCRAM users, with passwords) goes in a Java argument file, not argv.
    """
    pending = [NodeFiles(data_dir, n) for n in layout.node_ids()]
    pending = [files for files in pending if not files.formatted()]
    runs = []
    for files in pending:
        command = [
            str(java), "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*",
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={files.logs}",
            "kafka.tools.StorageTool", "format", "--ignore-formatted",
            "-t", layout.cluster_id, "-c", str(files.properties),
        ]  # fmt: skip
        if extra:
            argfile = _argument_file(files.root / "format.args", [*command[1:], *extra])
            command = [str(java), f"@{argfile}"]
        runs.append(
            (files, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        )
    for files, run in runs:
        output, _ = run.communicate(timeout=120)
        (files.root / "format.args").unlink(missing_ok=True)
        if run.returncode != 0 or not files.formatted():
            raise BrokerError(
                f"formatting node {files.node_id}'s storage in {files.data} failed "
                f"(exit {run.returncode}):\n{output.decode(errors='replace').strip()}\n"
                f"fix: read the message above; if the data dir is damaged, delete {data_dir}"
            )


def _argument_file(path: Path, args: list[str]) -> Path:
    """A Java argument file (``java @file``) with ``args``, readable by its owner only."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f'"{a}"\n' for a in args))
    return path


def launch(java: Path, libs: Path, files: NodeFiles, log4j: Path, heap: str) -> int:
    command = [
        str(java), *jvm_options(heap, log4j, files.logs),
        "-cp", f"{libs}/*", "kafka.Kafka", str(files.properties),
    ]  # fmt: skip
    with files.stdout_log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=files.root,
            start_new_session=True,  # survives the CLI; Ctrl-C in a shell does not reach it
        )
    remember_child(process)
    files.write_pid(process.pid)
    return process.pid


def _answers_with_all(layout: Layout) -> bool:
    for port in layout.broker_ports():
        try:
            metadata = fetch_metadata(layout.host, port, timeout=1.0)
        except OSError:
            return False
        if len(metadata.brokers) < layout.brokers:
            return False
    return True


def wait_ready(layout: Layout, data_dir: Path, pids: dict[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for node_id, pid in pids.items():
            files = NodeFiles(data_dir, node_id)
            if not process_alive(pid, files.properties):
                raise BrokerError(
                    f"node {node_id} (pid {pid}) exited while starting; expected it to join "
                    f"the cluster; fix: see its logs:\n{files.log_tail()}"
                )
        if _answers_with_all(layout):
            return
        if time.monotonic() > deadline:
            tails = "\n".join(NodeFiles(data_dir, n).log_tail() for n in layout.node_ids())
            raise BrokerError(
                f"the cluster in {data_dir} did not answer metadata requests with all "
                f"{layout.brokers} brokers within {timeout:.0f} s; fix: see the logs below, "
                f"or retry with a longer timeout:\n{tails}"
            )
        time.sleep(POLL)
