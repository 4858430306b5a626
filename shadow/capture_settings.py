"""Capture settings: the ``[capture]`` config section merged with mitmproxy options.

Why one module for both: the same knob can come from ``--set capture_x=...``
(mitmdump or ``rgs-shadow capture``) or from the ``[capture]`` table of the
TOML file.  An option given explicitly (different from its default) wins, then
the config key, then the default.  Everything is checked here, without
mitmproxy, so the CLI can reject a bad file before starting a proxy; every
message names its key (``capture.X``) as PROTOCOL.md section 7 asks.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from wallet_core.errors import ConfigError

__all__ = ["CONFIG_KEYS", "OPTION_OF", "CaptureSettings", "default_proxy_id", "resolve_settings"]

_PROXY_ID = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


def default_proxy_id() -> str:
    """The host name, made safe for file names: a restart on the same host finds its spool."""
    name = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64]
    return name or "proxy"


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """Everything the addon needs after validation."""

    body_cap_bytes: int = 1024 * 1024
    segment_seconds: int = 5
    segment_bytes: int = 64 * 1024 * 1024
    on_write_failure: str = "pass"
    redact_headers: tuple[str, ...] = ()
    redact_body_fields: tuple[str, ...] = ()
    redact_key_env: str = "RGS_SHADOW_REDACT_KEY"
    proxy_id: str = ""
    duplicate_window_hours: int = 48
    merge_interval_seconds: int = 3600
    fsync_interval_ms: int = 1000

    def redact_key(self, env: Mapping[str, str] | None = None) -> bytes:
        """The redaction key, or ConfigError when redaction is on and the variable is unset."""
        env = os.environ if env is None else env
        value = env.get(self.redact_key_env, "")
        if (self.redact_headers or self.redact_body_fields) and not value:
            raise ConfigError(
                f"capture.redact_key_env: environment variable {self.redact_key_env} is not set "
                f"(redaction needs a key)"
            )
        return value.encode()


#: The ``[capture]`` keys, with the mitmproxy option that overrides each.
OPTION_OF: dict[str, str] = {
    "body_cap_bytes": "capture_body_cap",
    "segment_seconds": "capture_segment_seconds",
    "segment_bytes": "capture_segment_bytes",
    "on_write_failure": "capture_on_write_failure",
    "redact_headers": "capture_redact_headers",
    "redact_body_fields": "capture_redact_body_fields",
    "redact_key_env": "capture_redact_key_env",
    "proxy_id": "capture_proxy_id",
    "duplicate_window_hours": "capture_duplicate_window_hours",
    "merge_interval_seconds": "capture_merge_seconds",
    "fsync_interval_ms": "capture_fsync_ms",
}
CONFIG_KEYS = frozenset(f.name for f in fields(CaptureSettings))
assert CONFIG_KEYS == set(OPTION_OF)

_MINIMUM = {
    "body_cap_bytes": 0,
    "segment_seconds": 1,
    "segment_bytes": 4096,
    "duplicate_window_hours": 0,
    "merge_interval_seconds": 1,
    "fsync_interval_ms": 0,
}


def _check(key: str, value: Any, where: str) -> Any:
    if key in _MINIMUM:
        if isinstance(value, bool) or not isinstance(value, int) or value < _MINIMUM[key]:
            raise ConfigError(f"{where}: must be an integer >= {_MINIMUM[key]}")
        return value
    if key == "on_write_failure":
        if value not in ("pass", "stop"):
            raise ConfigError(f'{where}: must be "pass" or "stop"')
        return value
    if key in ("redact_headers", "redact_body_fields"):
        if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: must be a list of non-empty strings")
        return tuple(value)
    if key == "redact_key_env":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: must be the name of an environment variable")
        return value
    if key == "proxy_id":
        if not isinstance(value, str) or not (value == "" or _PROXY_ID.match(value)):
            raise ConfigError(f"{where}: must be 1-64 characters of A-Z a-z 0-9 _ .")
        return value
    raise ConfigError(f"{where}: unknown key")


def resolve_settings(
    section: Mapping[str, Any],
    explicit_options: Mapping[str, Any] | None = None,
) -> CaptureSettings:
    """Settings from the ``[capture]`` table, overridden by explicitly set options.

    ``explicit_options`` maps option names (``capture_body_cap``...) to values the
    user set; keys not in it take the config value or the default.
    """
    explicit_options = explicit_options or {}
    values: dict[str, Any] = {}
    for key, value in section.items():
        values[key] = _check(key, value, f"capture.{key}")
    for key, option in OPTION_OF.items():
        if option in explicit_options:
            values[key] = _check(key, explicit_options[option], option)
    if not values.get("proxy_id"):
        values["proxy_id"] = default_proxy_id()
    return CaptureSettings(**values)
