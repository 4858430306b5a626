"""Replay in process: same decisions as the live wallet, deterministic, faults, shards."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.faults import FaultPlan
from replay.run import ReplayOptions, run_replay
from wallet_core import WalletConfig
from wallet_core.store import SqliteStore

from .conftest import LiveRecorder

PLAYERS = [("p1", "EUR", 5_000), ("p2", "JPY", 300), ("p3", "BTC", 100_000)]
AMOUNTS = {"EUR": ("1.50", 150), "JPY": ("90", 90), "BTC": ("0.00010000", 10_000)}


def traffic(tmp_path: Path, seed: int = 1, n: int = 300) -> Path:
    """Interleaved players, rejections, retries, refunds, settles; answered by a live wallet."""
    rng = random.Random(seed)
    rec = LiveRecorder(tmp_path, {(p, c): b for p, c, b in PLAYERS})
    for p, c, _ in PLAYERS:
        rec.session(f"s-{p}", p, c)
    sent: list[dict[str, str]] = []
    for i in range(n):
        p, c, _ = rng.choice(PLAYERS)
        base = {"session_id": f"s-{p}", "player_id": p, "currency": c}
        text, _minor = AMOUNTS[c]
        roll = rng.random()
        if i % 25 == 24:
            fields = {**base, "transaction_id": f"x{i}", "amount": "99999", "round_id": "rx"}
            fields["amount"] = {"EUR": "99999.00", "JPY": "99999", "BTC": "9.00000000"}[c]
            rec.send("bet", **fields)
            sent.append({"event": "bet", **fields})
        elif roll < 0.45:
            fields = {
                **base,
                "transaction_id": f"b{i}",
                "amount": text,
                "round_id": f"r{p}-{i // 5}",
            }
            rec.send("bet", **fields)
            sent.append({"event": "bet", **fields})
        elif roll < 0.75:
            rec.send("win", **base, transaction_id=f"w{i}", amount=text, round_id=f"r{p}-{i // 5}")
        elif roll < 0.85 and sent:
            again = rng.choice(sent)
            rec.send(again["event"], **{k: v for k, v in again.items() if k != "event"})
        elif roll < 0.92 and sent:
            bet = rng.choice(sent)
            rec.send(
                "refund",
                session_id=bet["session_id"],
                player_id=bet["player_id"],
                currency=bet["currency"],
                transaction_id=f"f{i}",
                amount=bet["amount"],
                round_id=bet["round_id"],
                ref_transaction_id=bet["transaction_id"],
            )
        elif roll < 0.96:
            rec.send("settle", **base, transaction_id=f"e{i}", round_id=f"r{p}-{i // 5}")
        else:
            rec.send("balance", **base)
    rec.store.close()
    return rec.write(tmp_path / "capture")


def options(capture: Path, out: Path, **kw: object) -> ReplayOptions:
    return ReplayOptions(capture_dir=capture, out=out, config=WalletConfig.single(), **kw)  # type: ignore[arg-type]


def test_replay_decides_what_the_live_wallet_answered(tmp_path: Path) -> None:
    capture = traffic(tmp_path)
    summary = run_replay(options(capture, tmp_path / "d.parquet"))
    table = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert summary.callbacks == len(table) == 300
    assert {r["code"] for r in table} >= {"OK", "INSUFFICIENT_FUNDS"}
    for row in table:
        assert (row["code"], row["http_status"]) == (row["live_code"], row["live_status"]), row
        if row["live_balance_minor"] is not None and row["outcome"] != "REPEAT":
            assert row["balance_after_minor"] == row["live_balance_minor"], row
    assert sum(r["outcome"] == "REPEAT" for r in table) > 0


def test_replay_is_deterministic(tmp_path: Path) -> None:
    capture = traffic(tmp_path)
    run_replay(options(capture, tmp_path / "a.parquet"))
    run_replay(options(capture, tmp_path / "b.parquet"))
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def balances_after(tmp_path: Path, capture: Path, name: str, plan: FaultPlan) -> dict:  # type: ignore[type-arg]
    db = tmp_path / f"{name}.db"
    run_replay(
        options(capture, tmp_path / f"{name}.parquet", db_url=f"sqlite:///{db}", faults=plan)
    )
    store = SqliteStore(db)
    try:
        assert store.ledger_sums() == store.balances()
        return store.balances()
    finally:
        store.close()


def test_duplicates_injected_move_no_money(tmp_path: Path) -> None:
    capture = traffic(tmp_path)
    clean = balances_after(tmp_path, capture, "clean", FaultPlan())
    noisy = balances_after(tmp_path, capture, "noisy", FaultPlan(duplicate_rate=0.2, seed=3))
    assert noisy == clean
    rows = pq.read_table(tmp_path / "noisy.parquet").to_pylist()
    dups = [r for r in rows if r["injected"] == "duplicate"]
    assert len(dups) > 30
    assert all(r["outcome"] == "REPEAT" for r in dups if r["transaction_id"] is not None)


def test_drops_and_reordering_are_marked(tmp_path: Path) -> None:
    capture = traffic(tmp_path)
    summary = run_replay(
        options(
            capture,
            tmp_path / "f.parquet",
            faults=FaultPlan(reorder_window=4, drop_rate=0.1, seed=5),
        )
    )
    rows = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert summary.dropped > 0 and len(rows) == 300 - summary.dropped
    assert any(r["injected"] == "reordered" for r in rows)


def test_union_of_shards_equals_the_whole(tmp_path: Path) -> None:
    capture = traffic(tmp_path)
    run_replay(options(capture, tmp_path / "all.parquet"))

    def key(row: dict) -> tuple:  # type: ignore[type-arg]
        return tuple(repr(v) for k, v in sorted(row.items()) if k != "seq")

    whole = sorted(map(key, pq.read_table(tmp_path / "all.parquet").to_pylist()))
    parts: list[tuple] = []  # type: ignore[type-arg]
    for k in (1, 2, 3):
        run_replay(options(capture, tmp_path / f"s{k}.parquet", shard=(k, 3)))
        part = pq.read_table(tmp_path / f"s{k}.parquet").to_pylist()
        parts.extend(map(key, part))
    assert whole and sorted(parts) == whole


def test_time_and_aggregator_filters(tmp_path: Path) -> None:
    capture = traffic(tmp_path, n=50)
    everything = run_replay(options(capture, tmp_path / "a.parquet")).callbacks
    none = run_replay(options(capture, tmp_path / "b.parquet", aggregator="other")).callbacks
    later = run_replay(
        options(capture, tmp_path / "c.parquet", since_us=1_795_000_000 * 1_000_000 + 25_500_000)
    ).callbacks
    assert (everything, none) == (50, 0)
    assert later == 25


def test_snapshot_gives_opening_balances(tmp_path: Path) -> None:
    capture = traffic(tmp_path, n=60)
    snap = tmp_path / "snap.csv"
    snap.write_text("player_id,currency,balance\np1,EUR,50.00\np2,JPY,300\np3,BTC,0.00100000\n")
    run_replay(options(capture, tmp_path / "s.parquet", snapshot=snap))
    rows = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert all(r["code"] == r["live_code"] for r in rows)


def _replay_cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    from tests._server import cli

    done = cli("replay", *args, "--out", str(tmp_path / "out.parquet"), "--quiet")
    return done.returncode, done.stderr


@pytest.mark.parametrize("case", ["missing", "empty", "not-parquet", "columns-missing", "since"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    capture = tmp_path / "capture"
    extra: list[str] = []
    if case != "missing":
        capture.mkdir()
    if case in ("not-parquet", "columns-missing", "since"):
        folder = capture / "date=2026-11-25" / "hour=10"
        folder.mkdir(parents=True)
        if case == "not-parquet":
            (folder / "part.parquet").write_bytes(b"this is not parquet at all")
        elif case == "columns-missing":
            pq.write_table(
                pa.table({"capture_id": ["a"], "latency_ms": [1.0]}), folder / "part.parquet"
            )
        else:
            (tmp_path / "t").mkdir()
            traffic(tmp_path / "t", n=5)
            capture = tmp_path / "t" / "capture"
            extra = ["--since", "last tuesday"]
    code, err = _replay_cli(tmp_path, str(capture), *extra)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    expected = {
        "missing": "does not exist",
        "empty": "no capture files",
        "not-parquet": "not a Parquet capture file",
        "columns-missing": "lacks column captured_at",
        "since": "--since",
    }[case]
    assert expected in err


def test_a_shard_caches_its_share_of_the_players(tmp_path: Path) -> None:
    from replay.run import _cache_rows

    whole = _cache_rows(options(tmp_path, tmp_path / "d.parquet"))
    assert _cache_rows(options(tmp_path, tmp_path / "d.parquet", shard=(1, 4))) == whole // 4
    assert _cache_rows(options(tmp_path, tmp_path / "d.parquet", shard=(1, 1000))) == 5_000
