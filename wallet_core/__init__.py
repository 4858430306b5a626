"""The wallet core: money, dialects, engine, policies, stores and the audit chain.

It imports nothing of the other rgs-shadow packages; everything else drives it.
"""

from __future__ import annotations

from .codes import HTTP_STATUS, Code
from .config import AggregatorConfig, WalletConfig, load_config
from .engine import Result, WalletCore
from .model import Callback, Decision, Event, HttpResponse, Mode, Outcome
from .money import CurrencyTable, MoneyError, format_amount, parse_amount
from .operator import OperatorApi, OperatorResult
from .policies import Policies

__all__ = [
    "HTTP_STATUS",
    "AggregatorConfig",
    "Callback",
    "Code",
    "CurrencyTable",
    "Decision",
    "Event",
    "HttpResponse",
    "Mode",
    "MoneyError",
    "OperatorApi",
    "OperatorResult",
    "Outcome",
    "Policies",
    "Result",
    "WalletConfig",
    "WalletCore",
    "format_amount",
    "load_config",
    "parse_amount",
]
