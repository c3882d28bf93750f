"""The points ledger: the only code that writes ledger entries, lots, debts and balances."""

from loyalty_engine.ledger.balances import (
    BalanceChanges,
    change_balances,
    end_inactivity_deadlines,
    has_inactivity_deadlines,
    shown_at,
    shown_columns,
)
from loyalty_engine.ledger.debts import NewDebt, record_debts
from loyalty_engine.ledger.earn import Earning, earn
from loyalty_engine.ledger.entries import LEDGER_COLUMNS, Entry, append
from loyalty_engine.ledger.lots import expiry_column
from loyalty_engine.ledger.spend import (
    Restore,
    Spend,
    Taken,
    restore,
    spend,
    spendable_points,
    take_from_lot,
    take_points,
)
from loyalty_engine.ledger.steps import StepResult, activate, expire

__all__ = [
    "LEDGER_COLUMNS",
    "BalanceChanges",
    "Earning",
    "Entry",
    "NewDebt",
    "Restore",
    "Spend",
    "StepResult",
    "Taken",
    "activate",
    "append",
    "change_balances",
    "earn",
    "end_inactivity_deadlines",
    "expire",
    "expiry_column",
    "has_inactivity_deadlines",
    "record_debts",
    "restore",
    "shown_at",
    "shown_columns",
    "spend",
    "spendable_points",
    "take_from_lot",
    "take_points",
]
