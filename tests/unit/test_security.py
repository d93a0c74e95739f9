"""Security settings: read from the environment, checked, handed to aiokafka, never shown."""

from __future__ import annotations

import os
import pickle
import ssl
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alto_stream.broker.config import Layout, server_properties
from alto_stream.broker.secured import SecureProfile, format_arguments, prepare, secure_properties
from alto_stream.cli import app as cli
from alto_stream.cli._security import security_env
from alto_stream.errors import BrokerError, ConfigError
from alto_stream.security import ENV, Secret, Security

SECRET = "s3cr3t-unique-7f1c2b"


def _env(**values: str) -> dict[str, str]:
    return {ENV[k]: v for k, v in values.items()}


def test_plaintext_by_default_gives_aiokafka_nothing_extra() -> None:
    settings = Security.from_env({})
    assert settings.protocol == "PLAINTEXT" and not settings.secured
    assert settings.kafka_options() == {}


def test_sasl_settings_from_the_environment() -> None:
    settings = Security.from_env(
        _env(protocol="sasl_plaintext", mechanism="scram-sha-256", username="u", password=SECRET)
    )
    options = settings.kafka_options()
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": SECRET,
    }


def test_the_password_from_a_file_and_the_default_mechanism(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text(SECRET + "\n")
    settings = Security.from_env(
        _env(protocol="SASL_PLAINTEXT", username="u", password_file=str(file))
    )
    assert settings.mechanism == "SCRAM-SHA-512"
    assert settings.password == Secret(SECRET)
    # A child gets the file's name, not the password.
    child = settings.child_env()
    assert child[ENV["password_file"]] == str(file) and child[ENV["password"]] == ""
    assert SECRET not in " ".join(child.values())


def test_secrets_never_show_in_repr_str_or_description() -> None:
    settings = Security(
        protocol="SASL_PLAINTEXT", username="u", password=Secret(SECRET), key_password=None
    )
    for text in (repr(settings), str(settings), settings.describe(), repr(settings.password)):
        assert SECRET not in text
    assert "***" in repr(settings)
    with pytest.raises(TypeError):
        pickle.dumps(Secret(SECRET))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"protocol": "TLS"}, "unknown security protocol 'TLS'"),
        ({"protocol": "SASL_SSL", "mechanism": "GSSAPI", "username": "u", "password": "p"},
         "unknown SASL mechanism 'GSSAPI'"),
        ({"protocol": "SASL_SSL", "password": "p"}, "needs a user name"),
        ({"protocol": "SASL_SSL", "username": "u"}, "needs a password"),
        ({"username": "u"}, "SASL settings given with security protocol PLAINTEXT"),
        ({"protocol": "SSL", "cafile": "/no/such/ca.pem"}, "not a readable file"),
        ({"protocol": "SSL", "check_hostname": "maybe"}, "must be true or false"),
        ({"protocol": "SASL_SSL", "username": "u", "password_file": "/no/such"},
         "cannot read the SASL password"),
    ],
)  # fmt: skip
def test_bad_settings_are_config_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Security.from_env(_env(**values))


def test_tls_context_uses_the_ca_and_hostname_flag(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(tmp_path / "ca.key"), "-out", str(ca), "-days", "1", "-subj", "/CN=t"],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = Security.from_env(_env(protocol="SSL", cafile=str(ca), check_hostname="false"))
    context = settings.kafka_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False and context.verify_mode == ssl.CERT_REQUIRED
    assert settings.ssl_context is context  # made once


def test_cli_flags_set_the_variables_for_the_command_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV["password"], SECRET)
    with security_env(
        {"security_protocol": "SASL_SSL", "sasl_username": "u", "ssl_check_hostname": False}
    ) as settings:
        assert settings.protocol == "SASL_SSL" and settings.check_hostname is False
        assert os.environ[ENV["protocol"]] == "SASL_SSL"
    assert ENV["protocol"] not in os.environ and os.environ[ENV["password"]] == SECRET


def test_a_password_file_flag_wins_over_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV["password"], "from-env")
    file = tmp_path / "pw"
    file.write_text(SECRET)
    values = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
              "sasl_password_file": file}  # fmt: skip
    with security_env(values) as settings:
        assert settings.password == Secret(SECRET)
    assert os.environ[ENV["password"]] == "from-env"


def test_every_connecting_command_has_the_flags_and_help_shows_no_secret() -> None:
    runner = CliRunner()
    env = {ENV["password"]: SECRET, ENV["key_password"]: SECRET, "COLUMNS": "200"}
    for command in (["push"], ["tail"], ["trace"], ["up"], ["worker"], ["replay"],
                    ["topics", "apply"], ["topics", "list"], ["eval", "fanout"]):  # fmt: skip
        result = runner.invoke(cli, [*command, "--help"], env=env)
        assert result.exit_code == 0, (command, result.output)
        assert "--security-protocol" in result.output, command
        assert "--sasl-password-file" in result.output, command
        assert SECRET not in result.output, command
    # Flags of a command that does not connect are left alone.
    result = runner.invoke(cli, ["broker", "stop", "--help"], env=env)
    assert "--security-protocol" not in result.output


def test_a_bad_flag_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(cli, ["topics", "list", "--security-protocol", "TLS"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: unknown security protocol 'TLS'")


# -- the secured local broker's configuration -------------------------------------------


def test_a_sasl_ssl_profile_configures_a_secure_listener(tmp_path: Path) -> None:
    layout = Layout.create(1, 19092)
    profile = prepare(tmp_path, layout, "sasl-ssl", True, new=True)
    assert profile is not None and profile.protocol == "SASL_SSL"
    files = profile.files
    for name in ("ca.pem", "broker.pem", "alto.password", "alto-limited.password", "client.env"):
        assert (files / name).is_file(), name
    for secret_file in ("broker.pem", "ca.key", "alto.password", "alto.key", "client.env"):
        assert (files / secret_file).stat().st_mode & 0o077 == 0, secret_file
    password = profile.password_file("alto").read_text().strip()
    assert password not in (files / "client.env").read_text()
    props = secure_properties(server_properties(layout, 1, tmp_path), profile, 1)
    port = profile.ports[0]
    assert f"SECURE://127.0.0.1:{port}" in props
    assert "SECURE:SASL_SSL" in props
    assert "listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256" in props
    assert "super.users=User:ANONYMOUS;User:alto" in props
    assert password not in props  # SCRAM users live in the metadata log, not the file
    args = format_arguments(profile)
    assert f"SCRAM-SHA-512=[name=alto,password={password}]" in args
    # A restart keeps the profile; another mode is refused.
    assert SecureProfile.load(tmp_path) == profile
    with pytest.raises(BrokerError, match="runs --security sasl-ssl --acl"):
        prepare(tmp_path, layout, "mtls", False, new=False)


def test_plain_broker_with_acl_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="--acl needs --security"):
        prepare(tmp_path, Layout.create(1, 19092), None, True, new=True)
    with pytest.raises(BrokerError, match="unknown --security 'kerberos'"):
        prepare(tmp_path, Layout.create(1, 19092), "kerberos", False, new=True)


def test_a_mechanism_the_listener_does_not_take_is_named_not_the_credentials() -> None:
    # Found by a new user: ALTO_SASL_MECHANISM=PLAIN against a SCRAM listener said
    # "Kafka refused the credentials ...; fix: check ALTO_SASL_USERNAME and ...".
    from aiokafka.errors import UnsupportedSaslMechanismError

    from alto_stream.runtime.kafka.security import access_error

    security = Security(protocol="SASL_SSL", mechanism="PLAIN", username="u", password=Secret("p"))
    error = access_error(UnsupportedSaslMechanismError("PLAIN"), "connect", security)
    assert error is not None
    assert "does not take the SASL mechanism PLAIN" in str(error)
    assert f"fix: set {ENV['mechanism']}" in str(error) and "credentials" not in str(error)


def test_a_silent_address_names_a_secured_listener_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by a new user: no security settings against a SASL_SSL port said only
    # "fix: start a local broker ...", with the broker running.
    import socket

    from alto_stream.ops.connect import check_broker

    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(BrokerError, match=f"secured listener .* set {ENV['protocol']}"):
        check_broker(f"127.0.0.1:{port}", timeout=0.5)


def test_the_export_lines_of_a_secured_start_are_never_wrapped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Found by a new user: with stderr not a terminal (80 columns) and a long data
    # directory, `export ALTO_SASL_PASSWORD_FILE=...` came out cut over three lines,
    # so `eval "$(... | grep ^export)"` set nothing.
    from types import SimpleNamespace

    from alto_stream.cli import broker_cmd

    long = tmp_path / ("a-rather-long-directory-name-" * 4) / "security" / "alto.password"
    env = {"ALTO_SECURITY_PROTOCOL": "SASL_SSL", "ALTO_SASL_PASSWORD_FILE": str(long)}
    profile = SimpleNamespace(
        acl=True, mode="sasl-ssl", protocol="SASL_SSL", files=long.parent, client_env=lambda: env
    )
    broker_cmd._print_security(profile)  # type: ignore[arg-type]
    lines = capsys.readouterr().err.splitlines()
    assert f"export ALTO_SASL_PASSWORD_FILE={long}" in lines


@pytest.mark.parametrize("silent", [TimeoutError(), OSError()])
async def test_a_probe_that_times_out_names_its_last_error(
    monkeypatch: pytest.MonkeyPatch, silent: Exception
) -> None:
    # A new user's TLS client at the PLAINTEXT port: "(waited 5s; last error
    # 127.0.0.1:11164: )", the error's text empty.
    from alto_stream.runtime.kafka import security as module

    async def _probe_one(*_args: object) -> None:
        raise silent

    monkeypatch.setattr(module, "_probe_one", _probe_one)
    security = Security(protocol="SSL")
    with pytest.raises(BrokerError) as raised:
        await module.probe([("127.0.0.1", 1)], security, 0.3)
    assert f"last error 127.0.0.1:1: {type(silent).__name__})" in str(raised.value)


def test_a_grant_refused_names_no_java_dump_and_not_itself_as_the_fix() -> None:
    # A new user's `topics grant` as a user without ACL rights: the line held Kafka's
    # dump of its Java request object, and its fix was to run `topics grant`.
    from aiokafka.errors import ClusterAuthorizationFailedError

    from alto_stream.runtime.kafka.security import access_error

    security = Security(
        protocol="SASL_SSL", mechanism="SCRAM-SHA-512", username="lim", password=Secret("p")
    )
    dump = "Request(processor=0, connectionId=127.0.0.1:9093-127.0.0.1:5-0, buffer=java.nio.H)"
    error = access_error(ClusterAuthorizationFailedError(dump), "create ACLs for bob", security)
    assert error is not None
    text = str(error)
    assert "Request(" not in text and "java" not in text
    assert "topics grant" not in text and "run it as a super user" in text
    error = access_error(ClusterAuthorizationFailedError(), "describe app.input", security)
    assert error is not None and "topics grant APP --user NAME" in str(error)


def test_tls_files_that_do_not_load_are_named_with_a_fix(tmp_path: Path) -> None:
    # A new user's round: "cannot load the TLS files (CA x, certificate None, key None):
    # [X509: NO_CERTIFICATE_OR_CRL_FOUND] ...", and a bare "[SSL] PEM lib" with no fix.
    for name in ("a", "b"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             str(tmp_path / f"{name}.key"), "-out", str(tmp_path / f"{name}.pem"),
             "-days", "1", "-subj", f"/CN={name}"],
            check=True, capture_output=True,
        )  # fmt: skip
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    a_pem, a_key, b_key = (str(tmp_path / f) for f in ("a.pem", "a.key", "b.key"))
    cases = [
        ({"cafile": str(garbage)}, f"cannot load the CA file {garbage} (ALTO_SSL_CAFILE)"),
        ({"certfile": a_pem, "keyfile": b_key}, "the key is not this certificate's"),
        ({"certfile": a_pem, "keyfile": a_pem}, "both must be PEM files"),
    ]
    for values, message in cases:
        settings = Security.from_env(_env(protocol="SSL", **values))
        with pytest.raises(ConfigError, match="fix: ") as caught:
            settings.kafka_options()
        assert message in str(caught.value), caught.value
        assert "None" not in str(caught.value)
    assert Security.from_env(_env(protocol="SSL", certfile=a_pem, keyfile=a_key)).ssl_context
