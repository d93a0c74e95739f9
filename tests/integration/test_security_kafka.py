"""Security on real brokers: SASL_SSL (SCRAM-SHA-512) with ACLs, mTLS, SASL PLAIN.

Each module-scoped fixture starts its own secured broker (``broker.start``
with ``security=...``) on free ports, apart from the suite's plain broker.
An app runs end to end over each; every refusal (a wrong password, an
unknown user, no CA, no client certificate, a topic ACL) is one ``error:``
line and exit status 2 from the CLI, and a worker that an ACL refuses exits
non-zero with one clear line. After the SASL_SSL run, the password (given in
the environment of every process) is searched for in every log, output,
``--help`` text, metrics page, dead letter and trace: it appears nowhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alto_stream import broker
from alto_stream.client import Client
from alto_stream.errors import AccessError
from alto_stream.ops.loading import load_app
from alto_stream.runner import LocalRun
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.security import Security
from alto_stream.testing import free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]

APP = """
from alto_stream import App

app = App({name!r}, input_schema="alto.Text")


@app.split(source=app.input, schema="alto.Text")
async def words(doc):
    return [{{"text": w}} for w in doc["text"].split()]


@app.map(source=words, schema="alto.Text")
async def shout(word):
    if word["text"] == "boom":
        raise ValueError("this word cannot be shouted")
    return {{"text": word["text"].upper()}}


@app.aggregate(source=shout, closes=words, schema="alto.Text")
async def joined(children):
    return {{"text": " ".join(c.value["text"] for c in children if c.ok)}}
"""

_SECURITY_ENV = (
    "ALTO_SECURITY_PROTOCOL", "ALTO_SASL_MECHANISM", "ALTO_SASL_USERNAME", "ALTO_SASL_PASSWORD",
    "ALTO_SASL_PASSWORD_FILE", "ALTO_SSL_CAFILE", "ALTO_SSL_CERTFILE", "ALTO_SSL_KEYFILE",
    "ALTO_SSL_KEY_PASSWORD", "ALTO_SSL_KEY_PASSWORD_FILE", "ALTO_SSL_CHECK_HOSTNAME",
)  # fmt: skip


@dataclass(frozen=True)
class Secured:
    """A running secured broker, and an app module written for it."""

    cluster: broker.Cluster
    folder: Path
    name: str
    ref: str

    @property
    def profile(self) -> broker.SecureProfile:
        assert self.cluster.security is not None
        return self.cluster.security

    def password(self, user: str = "alto") -> str:
        return self.profile.password_file(user).read_text().strip()

    def env(self, user: str = "alto", **changes: str | None) -> dict[str, str]:
        """A process environment for ``user``: the password itself in ALTO_SASL_PASSWORD."""
        env = {k: v for k, v in os.environ.items() if k not in _SECURITY_ENV}
        env.update(self.profile.client_env(user))
        if "ALTO_SASL_PASSWORD_FILE" in env:
            del env["ALTO_SASL_PASSWORD_FILE"]
            env["ALTO_SASL_PASSWORD"] = self.password(user)
        env["PYTHONPATH"] = os.pathsep.join([str(self.folder), str(ROOT)])
        env["ALTO_CONNECT_TIMEOUT"] = "20"
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def security(self, user: str = "alto") -> Security:
        return Security.from_env(self.env(user))

    def run(self, *args: str, env: dict[str, str], timeout: float = 120) -> Ran:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "alto_stream.cli", *args],
            env=env, cwd=self.folder, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    seconds: float

    def one_error_line(self) -> str:
        """The single ``error:`` line of a refused command (nothing else on stderr)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert "Traceback" not in self.err, self.err
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        return lines[0]


def _secured(
    tmp_path_factory: pytest.TempPathFactory, mode: str, *, acl: bool = False
) -> Iterator[Secured]:
    from alto_stream.testing import unique_name

    data_dir = tmp_path_factory.mktemp(f"broker-{mode}")
    cluster = broker.start(port=0, data_dir=data_dir, security=mode, acl=acl, timeout=240)
    folder = tmp_path_factory.mktemp(f"app-{mode}")
    name = unique_name(f"sec-{mode}")
    module = "m_" + name.replace("-", "_")
    (folder / f"{module}.py").write_text(APP.format(name=name))
    sys.path.insert(0, str(folder))
    try:
        yield Secured(cluster, folder, name, f"{module}:app")
    finally:
        sys.path.remove(str(folder))
        broker.stop(data_dir)


@pytest.fixture(scope="module")
def scram_ssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    yield from _secured(tmp_path_factory, "sasl-ssl", acl=True)


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    yield from _secured(tmp_path_factory, "mtls")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    yield from _secured(tmp_path_factory, "sasl-plain")


_TOPIC, _GROUP = 2, 3  # Kafka's ACL resource types
_READ, _WRITE, _DESCRIBE, _IDEMPOTENT_WRITE, _PREFIXED, _ALLOW = 3, 4, 8, 12, 4, 3


def _grant(secured: Secured, user: str, resource: int, prefix: str, operations: list[int]) -> None:
    """Allow ``user`` ``operations`` on resources named ``prefix``... (as the super user)."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.admin import CreateAclsRequest

    async def go() -> None:
        host, port = secured.cluster.bootstrap.split(",")[0].split(":")
        conn = await create_conn(host, int(port), **secured.security().kafka_options())
        try:
            for operation in operations:
                request = CreateAclsRequest(
                    resource, prefix, _PREFIXED, f"User:{user}", "*", operation, _ALLOW
                )
                response = await conn.send(request)
                assert all(r[0] == 0 for r in response.creation_responses), response
        finally:
            conn.close()

    asyncio.run(go())


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _in_process_run(secured: Secured, user: str, docs: list[str]) -> dict[str, Any]:
    """The app's workers (LocalRun) and a Client in this process, over ``user``'s settings."""

    async def go() -> dict[str, Any]:
        transport = KafkaTransport(secured.cluster.bootstrap, security=secured.security(user))
        await transport.check()
        app = load_app(secured.ref)
        await transport.ensure_topics(app.topology().topic_specs(partitions=2))
        async with LocalRun(app, transport), Client(app, transport) as client:
            finals = await client.run([{"text": d} for d in docs], timeout=90)
        return {q: r.value for q, r in finals.items()}

    return asyncio.run(go())


# -- SASL_SSL (SCRAM-SHA-512) with ACLs: an app end to end, and no secret anywhere --------


def test_an_app_over_sasl_ssl_never_shows_the_password(scram_ssl: Secured, tmp_path: Path) -> None:
    secret = scram_ssl.password()
    assert len(secret) >= 24
    env = scram_ssl.env()
    assert env["ALTO_SECURITY_PROTOCOL"] == "SASL_SSL" and env["ALTO_SASL_PASSWORD"] == secret
    seen: dict[str, str] = {}  # every text that a secret must not appear in

    applied = scram_ssl.run("-v", "topics", "apply", scram_ssl.ref, env=env)
    seen["topics apply"] = applied.out + applied.err
    assert applied.code == 0, applied.err

    logs, ready, port = tmp_path / "run", tmp_path / "ready.json", free_ports(3)
    up = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "-v", "up", scram_ssl.ref, "--json",
         "--log-dir", str(logs), "--ready-file", str(ready), "--metrics-base-port", str(port),
         "--duration", "300"],
        env=env, cwd=scram_ssl.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "up never said ready"
            time.sleep(0.2)
        pushed = scram_ssl.run(
            "-v", "push", scram_ssl.ref, "hello secure world", "boom goes it",
            "--follow", "--json", "--timeout", "120", env=env, timeout=180,
        )  # fmt: skip
        seen["push"] = pushed.out + pushed.err
        assert pushed.code == 0, pushed.err
        finals = {r["query_id"]: r for r in _json_lines(pushed.out) if r.get("final")}
        values = sorted(r["value"]["text"] for r in finals.values())
        assert values == ["GOES IT", "HELLO SECURE WORLD"], pushed.out
        for offset in range(3):  # words-0, shout-0, joined-0
            page = urllib.request.urlopen(f"http://127.0.0.1:{port + offset}/metrics", timeout=10)
            seen[f"metrics {offset}"] = page.read().decode()
        assert "alto_records_in_total" in seen["metrics 0"] or "alto_" in seen["metrics 0"]
        for query_id in finals:
            traced = scram_ssl.run("trace", query_id, "--app", scram_ssl.ref, "--json", env=env)
            seen[f"trace {query_id}"] = traced.out + traced.err
            assert traced.code == 0, traced.err
        dead = scram_ssl.run(
            "tail", f"{scram_ssl.name}.shout.dlq", "--app", scram_ssl.ref, "--from-beginning",
            "--no-follow", "--json", env=env,
        )  # fmt: skip
        seen["dead letters"] = dead.out + dead.err
        assert dead.code == 0, dead.err
        assert "this word cannot be shouted" in dead.out, dead.out
    finally:
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=120)
    seen["up"] = out + err
    for command in (["push"], ["up"], ["worker"], ["trace"], ["tail"], ["topics", "apply"], []):
        helped = scram_ssl.run(*command, "--help", env={**env, "COLUMNS": "200"})
        seen[f"help {command}"] = helped.out + helped.err
        assert helped.code == 0
    assert "--security-protocol" in seen["help ['push']"]
    assert "ALTO_SASL_PASSWORD" in seen["help ['push']"]
    for path in logs.rglob("*"):
        if path.is_file():
            seen[f"log {path.name}"] = path.read_text(errors="replace")
    assert any("worker" in k or "log" in k for k in seen)
    seen["repr"] = repr(scram_ssl.security()) + str(scram_ssl.security().kafka_options().keys())
    leaked = [where for where, text in seen.items() if secret in text]
    assert leaked == [], f"the password appeared in: {leaked}"
    assert len(seen) > 15


# -- SASL_SSL refusals: one clear line, exit 2 -------------------------------------------


_CLOSES = """
import time
from alto_stream.ops import eventloop
from alto_stream.runtime.kafka import KafkaTransport
from alto_stream.topics import TopicSpec

async def main():
    transport = KafkaTransport()
    topic = {topic!r}
    await transport.ensure_topics([TopicSpec(topic, 2, 1, "delete", None, {{}})])
    took = []
    for i in range(6):  # a consumer started and stopped each time, as a restore does
        began = time.perf_counter()
        await transport.read_partition(topic, i % 2)
        took.append(time.perf_counter() - began)
    print(eventloop.chosen_loop(), max(took))

eventloop.run(main())
"""


def test_a_consumer_closes_at_once_over_tls(scram_ssl: Secured) -> None:
    # Found by a new user: on uvloop, closing a TLS connection waited for the broker's
    # close_notify up to uvloop's 30 s time-out, so 4 of 18 reads of one partition
    # (a changelog restore) took 30 s, and a restore outlived its group session.
    done = subprocess.run(
        [sys.executable, "-c", _CLOSES.format(topic=f"{scram_ssl.name}.closes")],
        env=scram_ssl.env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loop, longest = done.stdout.split()
    assert loop == "asyncio" and float(longest) < 10.0, done.stdout


def test_topics_grant_lets_a_user_run_an_app(scram_ssl: Secured, tmp_path: Path) -> None:
    # A new user could not grant `alto-limited` anything: the error lines name
    # kafka-acls, which the local install lacks. `topics grant` makes the ACLs an app needs.
    from alto_stream.testing import unique_name

    name = unique_name("granted")
    module = "m_" + name.replace("-", "_")
    (scram_ssl.folder / f"{module}.py").write_text(APP.format(name=name))
    ref, limited = f"{module}:app", scram_ssl.env("alto-limited")
    assert scram_ssl.run("topics", "apply", ref, env=scram_ssl.env()).code == 0
    assert scram_ssl.run("push", ref, "not yet", env=limited).code == 2
    refused = scram_ssl.run("topics", "grant", ref, "--user", "alto-limited", env=limited)
    assert refused.code == 2 and "Kafka denied access" in refused.one_error_line()
    granted = scram_ssl.run(
        "topics", "grant", ref, "--user", "alto-limited", "--json", env=scram_ssl.env()
    )
    assert granted.code == 0, granted.err
    rows = json.loads(granted.out)
    assert {(r["resource"], r["prefix"]) for r in rows} == {
        ("topic", f"{name}."),
        ("group", f"{name}."),
        ("transactional-id", f"{name}."),
    }
    ready = tmp_path / "ready.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "alto_stream.cli", "up", ref, "--ready-file", str(ready),
         "--log-dir", str(tmp_path / "run"), "--duration", "120"],
        env=limited, cwd=scram_ssl.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "up never said ready"
            time.sleep(0.2)
        pushed = scram_ssl.run("push", ref, "granted words", "--follow", "--json", env=limited)
        assert pushed.code == 0, pushed.err
        assert _json_lines(pushed.out)[-1]["value"] == {"text": "GRANTED WORDS"}
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=60)


def test_a_wrong_password_is_one_error_line(scram_ssl: Secured) -> None:
    ran = scram_ssl.run("topics", "apply", scram_ssl.ref,
                        env=scram_ssl.env(ALTO_SASL_PASSWORD="not-the-password"))  # fmt: skip
    assert ran.code == 2
    line = ran.one_error_line()
    assert "refused the credentials of user 'alto'" in line
    assert "not-the-password" not in ran.err
    assert ran.seconds < 60


def test_an_unknown_user_is_one_error_line(scram_ssl: Secured) -> None:
    ran = scram_ssl.run("push", scram_ssl.ref, "x",
                        env=scram_ssl.env(ALTO_SASL_USERNAME="mallory"))  # fmt: skip
    assert ran.code == 2
    assert "refused the credentials of user 'mallory'" in ran.one_error_line()


def test_a_missing_ca_is_one_error_line(scram_ssl: Secured) -> None:
    ran = scram_ssl.run("tail", f"{scram_ssl.name}.input", "--no-follow",
                        env=scram_ssl.env(ALTO_SSL_CAFILE=None))  # fmt: skip
    assert ran.code == 2
    line = ran.one_error_line()
    assert "certificate is not trusted by the system's CAs" in line
    assert "ALTO_SSL_CAFILE" in line


def test_a_wrong_ca_is_one_error_line(scram_ssl: Secured, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(tmp_path / "k"), "-out", str(other), "-days", "1", "-subj", "/CN=another CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    ran = scram_ssl.run("push", scram_ssl.ref, "x", env=scram_ssl.env(ALTO_SSL_CAFILE=str(other)))
    assert ran.code == 2
    assert f"not trusted by the CA {other}" in ran.one_error_line()


def test_a_topic_acl_denial_is_one_error_line(scram_ssl: Secured) -> None:
    limited = scram_ssl.env("alto-limited")
    for args in (
        ("push", scram_ssl.ref, "denied words"),
        ("tail", f"{scram_ssl.name}.input", "--no-follow"),
        ("topics", "apply", scram_ssl.ref),
        # Before: "unknown topic", and the web view waited for the topics for ever.
        ("topics", "describe", f"{scram_ssl.name}.input"),
        ("ui", scram_ssl.ref, "--port", "0"),
    ):
        ran = scram_ssl.run(*args, env=limited, timeout=60)
        assert ran.code == 2, (args, ran.err)
        line = ran.one_error_line()
        assert "Kafka denied access" in line and "'alto-limited'" in line, line
        assert "is not authorized for the topic" in line or "cluster" in line, line


def test_a_worker_refused_by_an_acl_exits_with_one_clear_line(scram_ssl: Secured) -> None:
    assert scram_ssl.run("topics", "apply", scram_ssl.ref, env=scram_ssl.env()).code == 0
    ran = scram_ssl.run("worker", scram_ssl.ref, "shout", env=scram_ssl.env("alto-limited"),
                        timeout=120)  # fmt: skip
    assert ran.code != 0
    errors = [line for line in ran.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, ran.err
    assert "Kafka denied access" in errors[0] and "alto-limited" in errors[0]
    assert "Traceback" not in ran.err


def test_a_worker_without_a_group_acl_exits_with_one_clear_line(scram_ssl: Secured) -> None:
    """Topics allowed, the consumer group not: refused when it joins, not retried forever."""
    assert scram_ssl.run("topics", "apply", scram_ssl.ref, env=scram_ssl.env()).code == 0
    _grant(scram_ssl, "alto-limited", _TOPIC, f"{scram_ssl.name}.",
           [_READ, _WRITE, _DESCRIBE])  # fmt: skip
    ran = scram_ssl.run("worker", scram_ssl.ref, "words", env=scram_ssl.env("alto-limited"),
                        timeout=150)  # fmt: skip
    assert ran.code != 0
    errors = [line for line in ran.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, ran.err
    assert "Kafka denied access" in errors[0] and "consumer group" in errors[0], errors[0]
    assert "Traceback" not in ran.err


def test_the_python_api_raises_access_error(scram_ssl: Secured) -> None:
    wrong = Security.from_env(scram_ssl.env(ALTO_SASL_PASSWORD="nope"))
    transport = KafkaTransport(scram_ssl.cluster.bootstrap, security=wrong)
    with pytest.raises(AccessError, match="refused the credentials"):
        asyncio.run(transport.check(timeout=20))


# -- mTLS --------------------------------------------------------------------------------


def test_an_app_over_mtls(mtls: Secured) -> None:
    env = mtls.env()
    assert env["ALTO_SECURITY_PROTOCOL"] == "SSL" and "ALTO_SSL_CERTFILE" in env
    finals = _in_process_run(mtls, "alto", ["mutual tls works"])
    assert list(finals.values()) == [{"text": "MUTUAL TLS WORKS"}]
    listed = mtls.run("topics", "list", env=env)  # the CLI over mTLS too
    assert listed.code == 0, listed.err
    assert f"{mtls.name}.input" in listed.out


def test_mtls_without_a_client_certificate_is_one_error_line(mtls: Secured) -> None:
    ran = mtls.run("topics", "apply", mtls.ref,
                   env=mtls.env(ALTO_SSL_CERTFILE=None, ALTO_SSL_KEYFILE=None))  # fmt: skip
    assert ran.code == 2
    line = ran.one_error_line()
    assert "TLS" in line and "client certificate" in line, line


def test_broker_status_gives_the_secured_bootstrap(mtls: Secured) -> None:
    # A new user copied `broker status`'s bootstrap: the PLAINTEXT listener, whose
    # principal is ANONYMOUS, a super user. Clients are given the secured one.
    report = broker.status(mtls.cluster.data_dir)
    assert report.bootstrap == mtls.cluster.bootstrap == mtls.profile.bootstrap
    assert report.internal == f"127.0.0.1:{report.nodes[0].port}" != report.bootstrap
    shown = mtls.run("broker", "status", "-d", str(mtls.cluster.data_dir), env=dict(os.environ))
    assert shown.code == 0, shown.err
    assert f"bootstrap: {mtls.cluster.bootstrap}\n" in shown.out
    assert f"internal listener: {report.internal} (PLAINTEXT" in shown.out


def test_tls_to_the_plaintext_port_is_one_error_line(mtls: Secured) -> None:
    plaintext = broker.status(mtls.cluster.data_dir).nodes[0].port
    ran = mtls.run("topics", "apply", mtls.ref,
                   env=mtls.env(ALTO_BOOTSTRAP_SERVERS=f"127.0.0.1:{plaintext}"))  # fmt: skip
    assert ran.code == 2
    ran.one_error_line()


# -- SASL PLAIN --------------------------------------------------------------------------


def test_an_app_over_sasl_plain(plain: Secured) -> None:
    env = plain.env()
    assert (env["ALTO_SECURITY_PROTOCOL"], env["ALTO_SASL_MECHANISM"]) == (
        "SASL_PLAINTEXT",
        "PLAIN",
    )
    finals = _in_process_run(plain, "alto-limited", ["plain words", "more plain words"])
    applied = plain.run("topics", "apply", plain.ref, "--dry-run", env=env)
    assert "Sending username and password" not in applied.err  # aiokafka's warning, per connection
    assert sorted(v["text"] for v in finals.values()) == ["MORE PLAIN WORDS", "PLAIN WORDS"]


def test_topics_grant_without_an_authorizer_says_so(plain: Secured) -> None:
    ran = plain.run("topics", "grant", plain.ref, "--user", "someone", env=plain.env())
    assert ran.code == 2
    assert "the cluster has no authorizer" in ran.one_error_line()


def test_sasl_plain_wrong_password_is_one_error_line(plain: Secured, tmp_path: Path) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("wrong\n")
    ran = plain.run("push", plain.ref, "x", "--sasl-password-file", str(wrong), env=plain.env())
    assert ran.code == 2
    assert "refused the credentials of user 'alto' (PLAIN)" in ran.one_error_line()


def test_flags_set_the_same_settings_as_the_environment(plain: Secured) -> None:
    env = plain.env()
    flags = ["--security-protocol", env.pop("ALTO_SECURITY_PROTOCOL"),
             "--sasl-mechanism", env.pop("ALTO_SASL_MECHANISM"),
             "--sasl-username", env.pop("ALTO_SASL_USERNAME"),
             "--sasl-password-file", str(plain.profile.password_file("alto"))]  # fmt: skip
    del env["ALTO_SASL_PASSWORD"]
    ran = plain.run("topics", "list", *flags, env=env)
    assert ran.code == 0, ran.err
    assert f"{plain.name}.input" in ran.out and not ran.err
    ran = plain.run("topics", "list", env=env)  # no flags: PLAINTEXT, refused
    assert ran.code == 2
    ran.one_error_line()
