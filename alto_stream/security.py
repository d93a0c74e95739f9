"""How every Kafka client alto-stream makes authenticates and encrypts: one settings object.

:class:`Security` holds the security protocol (``PLAINTEXT``, ``SSL``,
``SASL_PLAINTEXT``, ``SASL_SSL``), the SASL mechanism and credentials, and
the TLS files. :meth:`Security.from_env` reads it from ``ALTO_SECURITY_*``,
``ALTO_SASL_*`` and ``ALTO_SSL_*``; the CLI's flags set the same variables,
so worker processes started by ``up`` inherit them (the password travels in
the environment or a file, never in a command line).

Secrets are :class:`Secret` values: their ``repr`` and ``str`` are ``***``,
so a settings object can be logged, printed or put in an error message.

>>> s = Security(protocol="SASL_SSL", mechanism="PLAIN", username="u", password=Secret("pw"))
>>> "pw" in repr(s)
False
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from alto_stream.errors import ConfigError

__all__ = [
    "ENV",
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "Secret",
    "Security",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_MECHANISM = "SCRAM-SHA-512"

ENV = {
    "protocol": "ALTO_SECURITY_PROTOCOL",
    "mechanism": "ALTO_SASL_MECHANISM",
    "username": "ALTO_SASL_USERNAME",
    "password": "ALTO_SASL_PASSWORD",
    "password_file": "ALTO_SASL_PASSWORD_FILE",
    "cafile": "ALTO_SSL_CAFILE",
    "certfile": "ALTO_SSL_CERTFILE",
    "keyfile": "ALTO_SSL_KEYFILE",
    "key_password": "ALTO_SSL_KEY_PASSWORD",
    "key_password_file": "ALTO_SSL_KEY_PASSWORD_FILE",
    "check_hostname": "ALTO_SSL_CHECK_HOSTNAME",
}
"""The environment variable of each setting (``*_FILE``: read the secret from that file)."""

_SHOWN = (
    "protocol", "mechanism", "username", "password", "cafile", "certfile", "keyfile",
    "key_password", "check_hostname",
)  # fmt: skip

SECRET_ENV = (ENV["password"], ENV["key_password"])
"""Variables whose values are secrets (never printed)."""


class Secret:
    """A string that hides itself: ``repr``/``str`` give ``***``; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for handing to the Kafka client."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling would write the secret: refuse
        raise TypeError("a Secret cannot be pickled")


def _read_secret(path: Path, what: str) -> Secret:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"the {what} file {path} is empty")
    return Secret(value)


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, repr=False)
class Security:
    """Security settings of a Kafka connection (PLAINTEXT by default).

    ``protocol``: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. ``mechanism``:
    PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL only; default SCRAM-SHA-512).
    ``username``/``password``: the SASL credentials. ``cafile``: the CA bundle
    that signed the brokers' certificates (default: the system's CAs).
    ``certfile``/``keyfile``/``key_password``: a client certificate for mutual
    TLS. ``check_hostname``: whether the broker's certificate must name the
    host connected to.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: Secret | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: Secret | None = None
    check_hostname: bool = True
    password_file: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        protocol = self.protocol.strip().upper().replace("-", "_")
        object.__setattr__(self, "protocol", protocol)
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"unknown security protocol {self.protocol!r} ({ENV['protocol']}, "
                f"--security-protocol); expected one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            self._check_sasl()
        elif self.mechanism or self.username or self.password:
            raise ConfigError(
                f"SASL settings given with security protocol {protocol}; fix: set "
                f"{ENV['protocol']} (--security-protocol) to SASL_SSL or SASL_PLAINTEXT"
            )
        if self.tls:
            self._check_tls()

    def _check_sasl(self) -> None:
        mechanism = (self.mechanism or DEFAULT_MECHANISM).strip().upper()
        object.__setattr__(self, "mechanism", mechanism)
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"unknown SASL mechanism {self.mechanism!r} ({ENV['mechanism']}, "
                f"--sasl-mechanism); expected one of {', '.join(SASL_MECHANISMS)}"
            )
        if not self.username:
            raise ConfigError(
                f"{self.protocol} needs a user name: set {ENV['username']} (--sasl-username)"
            )
        if self.password is None:
            raise ConfigError(
                f"{self.protocol} needs a password: set {ENV['password']}, or "
                f"{ENV['password_file']} (--sasl-password-file) to a file holding it"
            )

    def _check_tls(self) -> None:
        if self.keyfile and not self.certfile:
            raise ConfigError(
                f"a client key without a certificate: set {ENV['certfile']} (--ssl-certfile)"
            )
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(
                    f"{ENV[name]} (--ssl-{name}) names {path}, which is not a readable file"
                )

    @property
    def sasl(self) -> bool:
        """Whether the connection authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted with TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def secured(self) -> bool:
        """Whether anything but PLAINTEXT is asked for."""
        return self.protocol != "PLAINTEXT"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Security:
        """Settings from ``ALTO_SECURITY_PROTOCOL`` and the rest (see :data:`ENV`)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(ENV[name]) or None

        password_file = get("password_file")
        password = Secret(p) if (p := get("password")) else None
        if password is None and password_file:
            password = _read_secret(Path(password_file), f"SASL password ({ENV['password_file']})")
        key_password = Secret(k) if (k := get("key_password")) else None
        if key_password is None and (key_file := get("key_password_file")):
            what = f"key password ({ENV['key_password_file']})"
            key_password = _read_secret(Path(key_file), what)
        raw_check = get("check_hostname")
        return cls(
            protocol=get("protocol") or "PLAINTEXT",
            mechanism=get("mechanism"),
            username=get("username"),
            password=password,
            cafile=Path(c) if (c := get("cafile")) else None,
            certfile=Path(c) if (c := get("certfile")) else None,
            keyfile=Path(k) if (k := get("keyfile")) else None,
            key_password=key_password,
            check_hostname=True if raw_check is None else _flag(raw_check, ENV["check_hostname"]),
            password_file=Path(password_file) if password_file else None,
        )

    def describe(self) -> str:
        """A one-line description without secrets, e.g. ``SASL_SSL (SCRAM-SHA-512, user alto)``."""
        parts = []
        if self.sasl:
            parts.append(f"{self.mechanism}, user {self.username}")
        if self.tls:
            parts.append(f"CA {self.cafile}" if self.cafile else "system CAs")
            if self.certfile:
                parts.append(f"client certificate {self.certfile}")
        return f"{self.protocol} ({', '.join(parts)})" if parts else self.protocol

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SHOWN)
        return f"Security({fields})"

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the connection (None without TLS); ConfigError on bad files."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load the CA file {self.cafile} ({ENV['cafile']}): {exc}; fix: a PEM "
                "file of the certificates of the CA that signed the broker's "
                "(-----BEGIN CERTIFICATE-----)"
            ) from None
        context.check_hostname = self.check_hostname
        if self.certfile:
            try:
                context.load_cert_chain(
                    str(self.certfile),
                    str(self.keyfile) if self.keyfile else None,
                    self.key_password.reveal() if self.key_password else None,
                )
            except (ssl.SSLError, OSError) as exc:
                key = self.keyfile or "none: the certificate file's own"
                raise ConfigError(
                    f"cannot load the client certificate {self.certfile} ({ENV['certfile']}) "
                    f"with its key ({ENV['keyfile']}: {key}): {exc}; fix: " + _cert_chain_fix(exc)
                ) from None
        return context

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producers, consumers and admin clients."""
        if not self.secured:
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context
        if self.sasl:
            assert self.password is not None
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password.reveal()
        return options

    def child_env(self) -> dict[str, str]:
        """The environment that gives a child process these settings (secrets included).

        The password goes as ``ALTO_SASL_PASSWORD_FILE`` when it came from a
        file, else as ``ALTO_SASL_PASSWORD``: never in a command line.
        """
        env = dict.fromkeys(ENV.values(), "")
        env[ENV["protocol"]] = self.protocol
        if self.sasl:
            env[ENV["mechanism"]] = str(self.mechanism)
            env[ENV["username"]] = str(self.username)
            if self.password_file is not None:
                env[ENV["password_file"]] = str(self.password_file)
            elif self.password is not None:
                env[ENV["password"]] = self.password.reveal()
        for name in ("cafile", "certfile", "keyfile"):
            if (path := getattr(self, name)) is not None:
                env[ENV[name]] = str(path)
        if self.key_password is not None:
            env[ENV["key_password"]] = self.key_password.reveal()
        env[ENV["check_hostname"]] = "true" if self.check_hostname else "false"
        return env


def _cert_chain_fix(exc: Exception) -> str:
    """How to mend a client certificate and key that TLS could not load."""
    if "KEY_VALUES_MISMATCH" in str(exc):
        return "the key is not this certificate's: give the private key it was made with"
    if "PASSWORD" in str(exc).upper() or "BAD_DECRYPT" in str(exc):
        return f"the key's password is wrong ({ENV['key_password']} or _FILE)"
    return (
        "both must be PEM files: the certificate (-----BEGIN CERTIFICATE-----) and "
        "its private key (-----BEGIN ... PRIVATE KEY-----), each in its own setting"
    )
