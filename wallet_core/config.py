"""Configuration: TOML file (PROTOCOL.md section 7) or the environment defaults.

Every key is checked: an unknown key, a bad value or a missing secret variable is
a :class:`ConfigError` whose message names the key, so the CLI can print one line
and exit 2.  Sections owned by other packages (``capture``, ``settlement``,
``replay``, ``compare``) are kept raw in :attr:`WalletConfig.sections` and
validated by their owners.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .dialects import Dialect, get_dialect
from .errors import ConfigError
from .money import CurrencyTable, MoneyError
from .policies import Policies

__all__ = ["AggregatorConfig", "WalletConfig", "load_config"]

DEFAULT_BODY_LIMIT = 64 * 1024
DEFAULT_SESSION_TIMEOUT_MINUTES = 30
FOREIGN_SECTIONS = frozenset({"capture", "settlement", "replay", "compare", "reconcile"})
_TOP_KEYS = (
    frozenset({"aggregators", "policies", "sessions", "currencies", "server"}) | FOREIGN_SECTIONS
)


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    name: str
    dialect: Dialect
    secret_env: str
    secret: bytes | None


@dataclass(frozen=True, slots=True)
class WalletConfig:
    aggregators: Mapping[str, AggregatorConfig]
    currencies: CurrencyTable = field(default_factory=CurrencyTable)
    policies: Policies = field(default_factory=Policies)
    session_timeout_us: int = DEFAULT_SESSION_TIMEOUT_MINUTES * 60 * 1_000_000
    body_limit: int = DEFAULT_BODY_LIMIT
    #: Reject callbacks whose ``timestamp`` is older than this many seconds (live server only).
    timestamp_window_s: int | None = None
    sections: Mapping[str, Any] = field(default_factory=dict)

    def require_secrets(self) -> WalletConfig:
        """This config, or a :class:`ConfigError` naming the first aggregator without a secret."""
        for agg in self.aggregators.values():
            if not agg.secret:
                raise ConfigError(
                    f"aggregators.{agg.name}.secret_env: environment variable "
                    f"{agg.secret_env} is not set"
                )
        return self

    def with_policies(self, **changes: bool) -> WalletConfig:
        return replace(self, policies=replace(self.policies, **changes))

    @classmethod
    def single(
        cls, name: str = "default", secret: bytes = b"secret", dialect: str = "generic", **kw: Any
    ) -> WalletConfig:
        """A one-aggregator config for tests, benchmarks and the simulator."""
        agg = AggregatorConfig(name, get_dialect(dialect), "", secret)
        return cls(aggregators={name: agg}, **kw)


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key}: must be a table")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}{key}: unknown key")


def _positive_int(value: Any, key: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(
            f"{key}: must be a {'non-negative' if allow_zero else 'positive'} integer"
        )
    return value


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> WalletConfig:
    """Read ``path`` (TOML) or, when None, build the one-aggregator default from ``env``."""
    env = os.environ if env is None else env
    if path is None:
        name = env.get("RGS_SHADOW_AGGREGATOR", "default") or "default"
        secret = env.get("RGS_SHADOW_SECRET")
        agg = AggregatorConfig(name, get_dialect("generic"), "RGS_SHADOW_SECRET", _bytes(secret))
        return WalletConfig(aggregators={name: agg})
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_config(doc, env)


def parse_config(doc: Mapping[str, Any], env: Mapping[str, str]) -> WalletConfig:
    _check_keys(doc, _TOP_KEYS, "")
    aggregators: dict[str, AggregatorConfig] = {}
    for name, table in _table(doc, "aggregators", "").items():
        where = f"aggregators.{name}."
        if not isinstance(table, dict):
            raise ConfigError(f"aggregators.{name}: must be a table")
        _check_keys(table, {"dialect", "secret_env"}, where)
        try:
            dialect = get_dialect(str(table.get("dialect", "generic")))
        except KeyError as exc:
            raise ConfigError(f"{where}dialect: {exc.args[0]}") from None
        secret_env = table.get("secret_env")
        if not isinstance(secret_env, str) or not secret_env:
            raise ConfigError(f"{where}secret_env: required, the name of an environment variable")
        aggregators[name] = AggregatorConfig(name, dialect, secret_env, _bytes(env.get(secret_env)))
    if not aggregators:
        raise ConfigError("aggregators: at least one [aggregators.NAME] table is required")

    policy_table = _table(doc, "policies", "")
    _check_keys(policy_table, set(Policies.names()), "policies.")
    for key, value in policy_table.items():
        if not isinstance(value, bool):
            raise ConfigError(f"policies.{key}: must be true or false")
    policies = Policies(**policy_table)

    sessions = _table(doc, "sessions", "")
    _check_keys(sessions, {"timeout_minutes", "timeout_seconds"}, "sessions.")
    if "timeout_minutes" in sessions and "timeout_seconds" in sessions:
        raise ConfigError("sessions.timeout_seconds: give timeout_minutes or timeout_seconds")
    if "timeout_seconds" in sessions:
        timeout_s = _positive_int(sessions["timeout_seconds"], "sessions.timeout_seconds")
    else:
        timeout_s = 60 * _positive_int(
            sessions.get("timeout_minutes", DEFAULT_SESSION_TIMEOUT_MINUTES),
            "sessions.timeout_minutes",
        )

    currency_table = _table(doc, "currencies", "")
    try:
        currencies = CurrencyTable(currency_table)
    except MoneyError as exc:
        raise ConfigError(f"currencies: {exc}") from None

    server = _table(doc, "server", "")
    _check_keys(server, {"body_limit_bytes", "timestamp_window_seconds"}, "server.")
    body_limit = _positive_int(
        server.get("body_limit_bytes", DEFAULT_BODY_LIMIT), "server.body_limit_bytes"
    )
    window = server.get("timestamp_window_seconds")
    if window is not None:
        window = _positive_int(window, "server.timestamp_window_seconds")

    sections = {key: _table(doc, key, "") for key in FOREIGN_SECTIONS if key in doc}
    return WalletConfig(
        aggregators=aggregators,
        currencies=currencies,
        policies=policies,
        session_timeout_us=timeout_s * 1_000_000,
        body_limit=body_limit,
        timestamp_window_s=window,
        sections=sections,
    )


def _bytes(secret: str | None) -> bytes | None:
    return secret.encode() if secret else None
