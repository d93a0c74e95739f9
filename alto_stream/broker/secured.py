"""A local cluster with a secured client listener: TLS, mTLS, SASL PLAIN or SCRAM, ACLs.

``broker start --security MODE`` adds a listener ``SECURE`` on a port of its
own to every node; clients use it (the bootstrap printed). The nodes keep
their PLAINTEXT listener on 127.0.0.1 for themselves (between brokers, and the
readiness probe): the principal there is ``User:ANONYMOUS``, a super user.

Everything a client needs is written under ``<data dir>/security`` with mode
0600: a test CA and certificates (made with the ``openssl`` command), the
users' passwords, and ``client.env`` (the ``ALTO_*`` lines to source; it names
the password *file*, never the password). SCRAM users are created when the
storage is formatted (``kafka-storage format --add-scram``), their passwords
passed in a Java argument file so that no command line shows them.

Users: ``alto`` (a super user when ACLs are on) and ``alto-limited`` (no ACLs:
refused everything when ACLs are on). With ``acl=True`` the nodes run Kafka's
``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from alto_stream.broker.config import HOST, Layout
from alto_stream.broker.nodes import free_ports
from alto_stream.errors import BrokerError, BrokerSettingsError

__all__ = ["MODES", "SecureProfile", "prepare", "secure_properties"]

MODES = {
    "tls": ("SSL", ()),
    "mtls": ("SSL", ()),
    "sasl-plain": ("SASL_PLAINTEXT", ("PLAIN",)),
    "sasl-scram": ("SASL_PLAINTEXT", ("SCRAM-SHA-512", "SCRAM-SHA-256")),
    "sasl-ssl": ("SASL_SSL", ("SCRAM-SHA-512", "SCRAM-SHA-256")),
}
"""Mode -> (the client listener's security protocol, its SASL mechanisms)."""

USERS = ("alto", "alto-limited")
SUPER_USER = "alto"
_PROFILE = "security.json"
_DAYS = "30"


@dataclass(frozen=True)
class SecureProfile:
    """How a cluster's client listener is secured; saved as ``security.json``."""

    mode: str
    acl: bool
    ports: tuple[int, ...]
    directory: str

    @property
    def protocol(self) -> str:
        """The client listener's security protocol."""
        return MODES[self.mode][0]

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the listener accepts (none without SASL)."""
        return MODES[self.mode][1]

    @property
    def files(self) -> Path:
        """The directory of certificates, passwords and ``client.env``."""
        return Path(self.directory)

    @property
    def bootstrap(self) -> str:
        """The secured bootstrap address."""
        return ",".join(f"{HOST}:{p}" for p in self.ports)

    def password_file(self, user: str) -> Path:
        """The file holding ``user``'s password (mode 0600)."""
        return self.files / f"{user}.password"

    def client_env(self, user: str = SUPER_USER) -> dict[str, str]:
        """``ALTO_*`` settings to connect as ``user`` (no secret: the password's file)."""
        env = {"ALTO_BOOTSTRAP_SERVERS": self.bootstrap, "ALTO_SECURITY_PROTOCOL": self.protocol}
        if self.mechanisms:
            env["ALTO_SASL_MECHANISM"] = self.mechanisms[0]
            env["ALTO_SASL_USERNAME"] = user
            env["ALTO_SASL_PASSWORD_FILE"] = str(self.password_file(user))
        if "SSL" in self.protocol:
            env["ALTO_SSL_CAFILE"] = str(self.files / "ca.pem")
        if self.mode == "mtls":
            env["ALTO_SSL_CERTFILE"] = str(self.files / f"{user}.crt")
            env["ALTO_SSL_KEYFILE"] = str(self.files / f"{user}.key")
        return env

    @classmethod
    def load(cls, data_dir: Path) -> SecureProfile | None:
        """The profile saved in ``data_dir``, or None for a PLAINTEXT-only cluster."""
        path = data_dir / _PROFILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(raw["mode"], bool(raw["acl"]), tuple(raw["ports"]), raw["directory"])

    def save(self, data_dir: Path) -> None:
        """Write ``security.json``."""
        (data_dir / _PROFILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def prepare(
    data_dir: Path, layout: Layout, mode: str | None, acl: bool, *, new: bool
) -> SecureProfile | None:
    """The profile of the cluster in ``data_dir``: the saved one, or a new one made now.

    A new profile (``new``: the storage is not formatted yet) gets ports,
    certificates and passwords. Asking for another mode than the saved one is
    an error: users are created when the storage is formatted.
    """
    saved = SecureProfile.load(data_dir)
    if saved is not None:
        if mode is not None and (mode, acl) != (saved.mode, saved.acl):
            raise BrokerSettingsError(
                f"the cluster in {data_dir} runs --security {saved.mode}"
                f"{' --acl' if saved.acl else ''}; got --security {mode}"
                f"{' --acl' if acl else ''}; fix: omit the options, or use another --data-dir"
            )
        return saved
    if mode is None:
        if acl:
            raise BrokerSettingsError("--acl needs --security (ACLs need authenticated users)")
        return None
    if mode not in MODES:
        raise BrokerSettingsError(
            f"unknown --security {mode!r}; expected one of {', '.join(MODES)}"
        )
    if not new:
        raise BrokerSettingsError(
            f"the cluster in {data_dir} was formatted without --security; fix: use a new "
            "--data-dir (users are created when the storage is formatted)"
        )
    files = data_dir / "security"
    files.mkdir(parents=True, exist_ok=True)
    files.chmod(0o700)
    ports = tuple(free_ports() for _ in layout.node_ids())
    profile = SecureProfile(mode, acl, ports, str(files))
    _make_certificates(files)
    for user in USERS:
        _private(profile.password_file(user), secrets.token_urlsafe(24) + "\n")
    _private(
        files / "client.env",
        "".join(f"export {k}={v}\n" for k, v in profile.client_env().items()),
    )
    profile.save(data_dir)
    return profile


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise BrokerError(
            "--security needs the openssl command to make the test certificates; "
            "fix: install openssl (apt-get install openssl)"
        )
    run = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {run.stderr.strip()}")


def _sign(files: Path, name: str, subject: str, usage: str) -> None:
    key, csr, crt = (files / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    ext = files / f"{name}.ext"
    ext.write_text(
        f"subjectAltName=DNS:localhost,IP:{HOST}\n"
        f"extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", subject)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files / "ca.pem"),
             "-CAkey", str(files / "ca.key"), "-CAcreateserial", "-out", str(crt),
             "-days", _DAYS, "-extfile", str(ext))  # fmt: skip
    key.chmod(0o600)
    csr.unlink()
    ext.unlink()


def _make_certificates(files: Path) -> None:
    """A test CA, the brokers' certificate and one client certificate per user (PEM)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files / "ca.key"),
             "-out", str(files / "ca.pem"), "-days", _DAYS, "-subj", "/CN=alto-stream test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    (files / "ca.key").chmod(0o600)
    _sign(files, "broker", "/CN=localhost", "serverAuth,clientAuth")
    # Kafka's PEM key store: the private key (PKCS#8) and the certificate chain in one file.
    _private(
        files / "broker.pem",
        (files / "broker.key").read_text() + (files / "broker.crt").read_text(),
    )
    for user in USERS:
        _sign(files, user, f"/CN={user}", "clientAuth")


def format_arguments(profile: SecureProfile | None) -> list[str]:
    """``kafka-storage format`` arguments that create the SCRAM users (secrets inside)."""
    if profile is None:
        return []
    out = []
    for mechanism in profile.mechanisms:
        if not mechanism.startswith("SCRAM"):
            continue
        for user in USERS:
            password = profile.password_file(user).read_text().strip()
            out += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    return out


def secure_properties(base: str, profile: SecureProfile, node_id: int) -> str:
    """``server.properties`` of a node with the ``SECURE`` listener added to ``base``."""
    port = profile.ports[node_id - 1]
    files = profile.files
    lines = []
    for line in base.splitlines():
        key, _, value = line.partition("=")
        if key in ("listeners", "advertised.listeners"):
            line = f"{line},SECURE://{HOST}:{port}"
        elif key == "listener.security.protocol.map":
            line = f"{key}={value},SECURE:{profile.protocol}"
        lines.append(line)
    prefix = "listener.name.secure."
    if "SSL" in profile.protocol:
        lines += [
            f"{prefix}ssl.keystore.type=PEM",
            f"{prefix}ssl.keystore.location={files / 'broker.pem'}",
            f"{prefix}ssl.truststore.type=PEM",
            f"{prefix}ssl.truststore.location={files / 'ca.pem'}",
            f"{prefix}ssl.client.auth={'required' if profile.mode == 'mtls' else 'none'}",
            # A client certificate's principal is its CN (User:alto, not User:CN=alto).
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        ]
    if profile.mechanisms:
        lines.append(f"{prefix}sasl.enabled.mechanisms={','.join(profile.mechanisms)}")
    for mechanism in profile.mechanisms:
        if mechanism.startswith("SCRAM"):
            module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        else:
            users = " ".join(
                f'user_{u}="{profile.password_file(u).read_text().strip()}"' for u in USERS
            )
            module = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        lines.append(f"{prefix}{mechanism.lower()}.sasl.jaas.config={module}")
    if profile.acl:
        lines += [
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:ANONYMOUS;User:{SUPER_USER}",
        ]
    return "\n".join(lines) + "\n"
