from __future__ import annotations

from pathlib import Path

import pytest

from wallet_core.config import load_config
from wallet_core.errors import ConfigError

GOOD = """
[aggregators.acme]
dialect = "generic"
secret_env = "ACME_SECRET"

[policies]
tombstone_unknown_refunds = false

[sessions]
timeout_minutes = 10

[currencies]
DOGE = 8

[server]
body_limit_bytes = 1024
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_reads_every_section(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={"ACME_SECRET": "s3"}).require_secrets()
    assert cfg.aggregators["acme"].secret == b"s3"
    assert cfg.policies.tombstone_unknown_refunds is False
    assert cfg.session_timeout_us == 600_000_000
    assert cfg.currencies.exponent("DOGE") == 8 and cfg.body_limit == 1024


def test_default_without_a_file_uses_the_environment() -> None:
    cfg = load_config(None, env={"RGS_SHADOW_AGGREGATOR": "acme", "RGS_SHADOW_SECRET": "x"})
    assert list(cfg.aggregators) == ["acme"] and cfg.aggregators["acme"].secret == b"x"
    assert list(load_config(None, env={}).aggregators) == ["default"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD + "\n[typo]\nx = 1\n", "typo"),
        (GOOD.replace("dialect =", "dialekt ="), "aggregators.acme.dialekt"),
        (GOOD.replace('"generic"', '"hub88"'), "aggregators.acme.dialect"),
        (
            GOOD.replace("tombstone_unknown_refunds = false", "tombstone = false"),
            "policies.tombstone",
        ),
        (GOOD.replace("= false", '= "no"'), "policies.tombstone_unknown_refunds"),
        (GOOD.replace("timeout_minutes = 10", "timeout_minutes = -1"), "sessions.timeout_minutes"),
        (GOOD.replace("DOGE = 8", "DOGE = 40"), "currencies"),
        (
            GOOD.replace("body_limit_bytes = 1024", "body_limit_bytes = 0"),
            "server.body_limit_bytes",
        ),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text), env={"ACME_SECRET": "s"})


def test_missing_secret_variable_names_the_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={})
    with pytest.raises(ConfigError, match=r"aggregators\.acme\.secret_env.*ACME_SECRET"):
        cfg.require_secrets()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_session_timeout_in_seconds_for_rehearsals(tmp_path: Path) -> None:
    text = GOOD.replace("timeout_minutes = 10", "timeout_seconds = 3")
    assert load_config(write(tmp_path, text), env={}).session_timeout_us == 3_000_000
    both = GOOD.replace("timeout_minutes = 10", "timeout_minutes = 1\ntimeout_seconds = 3")
    with pytest.raises(ConfigError, match="sessions.timeout_seconds"):
        load_config(write(tmp_path, both), env={})
