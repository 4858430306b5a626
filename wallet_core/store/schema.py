"""The ledger schema as numbered migrations, shared in spirit by SQLite and PostgreSQL.

Each migration is a list of statements; ``meta.schema_version`` records how far a
store has come.  Amount columns are 64-bit integers everywhere, with
``CHECK (balance >= 0)`` as the last line of defence behind the conditional
debit.
"""

from __future__ import annotations

__all__ = ["POSTGRES_MIGRATIONS", "SQLITE_MIGRATIONS"]

SQLITE_MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE players (player_id TEXT PRIMARY KEY, blocked INTEGER NOT NULL DEFAULT 0)",
        """CREATE TABLE accounts (
            player_id TEXT NOT NULL, currency TEXT NOT NULL,
            balance INTEGER NOT NULL CHECK (typeof(balance) = 'integer' AND balance >= 0),
            PRIMARY KEY (player_id, currency)) WITHOUT ROWID""",
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY, aggregator TEXT NOT NULL, player_id TEXT NOT NULL,
            currency TEXT NOT NULL, opened_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL,
            closed_us INTEGER) WITHOUT ROWID""",
        """CREATE TABLE txns (
            aggregator TEXT NOT NULL, transaction_id TEXT NOT NULL, event TEXT NOT NULL,
            fingerprint BLOB, code TEXT, status INTEGER, body BLOB, balance_after INTEGER,
            player_id TEXT NOT NULL, currency TEXT NOT NULL, amount_minor INTEGER,
            round_id TEXT, applied INTEGER NOT NULL, refunded_by TEXT,
            PRIMARY KEY (aggregator, transaction_id)) WITHOUT ROWID""",
        """CREATE TABLE rounds (
            aggregator TEXT NOT NULL, round_id TEXT NOT NULL, player_id TEXT NOT NULL,
            currency TEXT NOT NULL, bet_total INTEGER NOT NULL, win_total INTEGER NOT NULL,
            refund_total INTEGER NOT NULL, settled_us INTEGER,
            PRIMARY KEY (aggregator, round_id)) WITHOUT ROWID""",
        """CREATE TABLE ledger (
            id INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, aggregator TEXT NOT NULL,
            transaction_id TEXT NOT NULL, kind TEXT NOT NULL, player_id TEXT NOT NULL,
            currency TEXT NOT NULL, amount_minor INTEGER NOT NULL,
            balance_after INTEGER NOT NULL)""",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, aggregator TEXT NOT NULL,
            kind TEXT NOT NULL, headers TEXT NOT NULL, request BLOB NOT NULL,
            decision TEXT NOT NULL, response BLOB NOT NULL, player_id TEXT, currency TEXT,
            amount_minor INTEGER, balance_after INTEGER, prev_hash BLOB NOT NULL,
            hash BLOB NOT NULL)""",
        """CREATE TABLE adjustments (
            reference TEXT PRIMARY KEY, balance_after INTEGER NOT NULL) WITHOUT ROWID""",
    ],
]

#: PostgreSQL: the same tables, plus ``audit_head``, the one row every transaction locks
#: (``FOR UPDATE``) right before it reads the last audit row and chains its own, so concurrent
#: writers still build a single chain.  Amounts are BIGINT (64 bits, as money.py guarantees).
POSTGRES_MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE players (player_id TEXT PRIMARY KEY, blocked BOOLEAN NOT NULL DEFAULT false)",
        """CREATE TABLE accounts (
            player_id TEXT NOT NULL, currency TEXT NOT NULL,
            balance BIGINT NOT NULL CHECK (balance >= 0),
            PRIMARY KEY (player_id, currency))""",
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY, aggregator TEXT NOT NULL, player_id TEXT NOT NULL,
            currency TEXT NOT NULL, opened_us BIGINT NOT NULL, last_seen_us BIGINT NOT NULL,
            closed_us BIGINT)""",
        """CREATE TABLE txns (
            aggregator TEXT NOT NULL, transaction_id TEXT NOT NULL, event TEXT NOT NULL,
            fingerprint BYTEA, code TEXT, status INTEGER, body BYTEA, balance_after BIGINT,
            player_id TEXT NOT NULL, currency TEXT NOT NULL, amount_minor BIGINT,
            round_id TEXT, applied BOOLEAN NOT NULL, refunded_by TEXT,
            PRIMARY KEY (aggregator, transaction_id))""",
        """CREATE TABLE rounds (
            aggregator TEXT NOT NULL, round_id TEXT NOT NULL, player_id TEXT NOT NULL,
            currency TEXT NOT NULL, bet_total BIGINT NOT NULL, win_total BIGINT NOT NULL,
            refund_total BIGINT NOT NULL, settled_us BIGINT,
            PRIMARY KEY (aggregator, round_id))""",
        """CREATE TABLE ledger (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at_us BIGINT NOT NULL,
            aggregator TEXT NOT NULL, transaction_id TEXT NOT NULL, kind TEXT NOT NULL,
            player_id TEXT NOT NULL, currency TEXT NOT NULL, amount_minor BIGINT NOT NULL,
            balance_after BIGINT NOT NULL)""",
        "CREATE INDEX ledger_account ON ledger (player_id, currency)",
        """CREATE TABLE audit (
            seq BIGINT PRIMARY KEY, at_us BIGINT NOT NULL, aggregator TEXT NOT NULL,
            kind TEXT NOT NULL, headers TEXT NOT NULL, request BYTEA NOT NULL,
            decision TEXT NOT NULL, response BYTEA NOT NULL, player_id TEXT, currency TEXT,
            amount_minor BIGINT, balance_after BIGINT, prev_hash BYTEA NOT NULL,
            hash BYTEA NOT NULL)""",
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1))",
        "INSERT INTO audit_head (id) VALUES (1)",
        """CREATE TABLE adjustments (
            reference TEXT PRIMARY KEY, balance_after BIGINT NOT NULL)""",
    ],
]
