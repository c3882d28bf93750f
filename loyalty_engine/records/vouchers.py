"""Column order of the vouchers several services append (ledger rows: loyalty_engine/ledger)."""

from __future__ import annotations

from typing import Any

from loyalty_engine.rules.compiled import CompiledReward

VOUCHER_COLUMNS = ("code", "member_id", "program_id", "program_version_id", "reward_id",
                   "kind", "amount_minor", "percent", "sku", "category", "source",
                   "purchase_id", "rule_id", "consumed", "issued_at", "valid_until", "status",
                   "changed_at")


def voucher_row(code: str, member_id: str, program_id: str, version_id: int,
                reward: CompiledReward, source: str, purchase_id: int | None,
                rule_id: str | None, consumed_json: str, issued_at: Any, valid_until: Any,
                changed_at: Any) -> tuple[Any, ...]:
    """A new voucher, issued now, in VOUCHER_COLUMNS order (times as the driver stores them)."""
    return (code, member_id, program_id, version_id, reward.reward_id, reward.kind,
            reward.amount_minor, None if reward.percent is None else str(reward.percent),
            reward.sku, reward.category, source, purchase_id, rule_id, consumed_json,
            issued_at, valid_until, "issued", changed_at)
