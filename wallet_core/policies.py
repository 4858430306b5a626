"""The rules of PROTOCOL.md section 1, each a named, configurable policy.

Defaults are the contract's.  Operators change them under ``[policies]`` in the
TOML configuration; every key here is documented in the README, and an unknown
key is a configuration error rather than a silently ignored typo.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["POLICY_DOCS", "Policies"]


@dataclass(frozen=True, slots=True)
class Policies:
    #: Shadow mode opens a session unknown to the wallet at its first callback.
    shadow_opens_unknown_sessions: bool = True
    #: ``win``, ``refund`` and ``settle`` still apply to a closed or expired session (money owed).
    credits_on_closed_sessions: bool = True
    #: A refund of an unknown bet answers 200 and leaves a tombstone that refuses the late bet.
    tombstone_unknown_refunds: bool = True
    #: A refund must name the bet's player, currency and amount; otherwise ``BAD_REQUEST``.
    refund_must_match_bet: bool = True
    #: A bet for a settled round gets ``ROUND_CLOSED``.
    refuse_bets_after_settle: bool = True
    #: Wins and refunds after ``settle`` still apply (flagged ``late``) instead of ``ROUND_CLOSED``.
    credits_after_settle: bool = True
    #: A blocked player's ``bet`` and ``balance`` get ``PLAYER_BLOCKED``; credits still apply.
    refuse_blocked_players: bool = True
    #: ``settle`` totals that differ from the wallet's own are recorded on the decision.
    check_settle_totals: bool = True

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


POLICY_DOCS: dict[str, str] = {
    "shadow_opens_unknown_sessions": "shadow mode opens an unknown session at its first callback",
    "credits_on_closed_sessions": "win/refund/settle apply to closed or expired sessions",
    "tombstone_unknown_refunds": "refund of an unknown bet: 200 and a tombstone",
    "refund_must_match_bet": "refund must match the bet's player, currency and amount",
    "refuse_bets_after_settle": "bets for a settled round get ROUND_CLOSED",
    "credits_after_settle": "wins and refunds after settle apply, flagged late",
    "refuse_blocked_players": "blocked players cannot bet or query the balance",
    "check_settle_totals": "settle totals are checked against the wallet's own",
}
