"""Errors a user can act on: each message is one sentence that says what to change."""

from __future__ import annotations

import re
from typing import ClassVar


class LoyaltyError(Exception):
    """Base for every error the entry points show as a message rather than a traceback.

    `code` is a stable identifier for scripts (the CLI's JSON errors carry it): by default
    the class name in snake case without "Error" (PurchaseConflictError: purchase_conflict).
    Renaming a class changes its code, which a test of the documented codes catches."""

    code: ClassVar[str] = "refused"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__.removesuffix("Error")).lower()


class PurchaseConflictError(LoyaltyError):
    """The same (store_id, transaction_id) was already recorded with a different body."""

    def __init__(self, store_id: str, transaction_id: str) -> None:
        self.store_id = store_id
        self.transaction_id = transaction_id
        super().__init__(
            f"transaction {transaction_id!r} of store {store_id!r} was already recorded with "
            "different contents; a purchase cannot be changed by posting it again"
        )


class PurchaseRejectedError(LoyaltyError):
    """A purchase that is well-formed but cannot be accepted (e.g. the wrong currency)."""


class ProgramApplyError(LoyaltyError):
    """A program version that cannot be stored as asked."""


class SchemaNotCurrentError(LoyaltyError):
    """The database is not migrated to the schema this code expects."""


class ImportFileError(LoyaltyError):
    """An import file that cannot be read at all (missing columns, empty, unknown format)."""


class RefundRejectedError(LoyaltyError):
    """A refund that cannot be accepted: no such purchase, more than was bought, ..."""


class RefundPurchaseMissingError(RefundRejectedError):
    """The purchase a refund names was never recorded."""


class RefundConflictError(LoyaltyError):
    """The same (store_id, refund_id) was already recorded with a different body."""

    def __init__(self, store_id: str, refund_id: str) -> None:
        super().__init__(
            f"refund {refund_id!r} of store {store_id!r} was already recorded with different "
            "contents; a refund cannot be changed by posting it again"
        )


class RedemptionRejectedError(LoyaltyError):
    """A redemption that cannot be made: too few points, an expired voucher, ..."""


class RedemptionBackdatedError(RedemptionRejectedError):
    """A redemption dated further back than its program lets an offline till send one."""

    field = "occurred_at"


class RedemptionConflictError(LoyaltyError):
    """The same redemption_id was already used for a different redemption."""

    def __init__(self, redemption_id: str) -> None:
        super().__init__(
            f"redemption {redemption_id!r} was already recorded with different contents; "
            "use a new redemption id"
        )


class NotFoundError(LoyaltyError):
    """Something asked for by id does not exist."""


class ClubError(LoyaltyError):
    """A club request that cannot be done: not eligible, already a member, same level, ..."""


class FeeError(LoyaltyError):
    """A fee charge that cannot be paid or changed as asked (already paid, no points, ...)."""


class TierError(LoyaltyError):
    """A tier request that cannot be done (an unknown tier, an expiry in the past)."""


class VerificationError(LoyaltyError):
    """A group verification that cannot be recorded (an expiry in the past, ...)."""


class MemberError(LoyaltyError):
    """A member request that cannot be done (a bad attribute, an unknown consent flag)."""


class AdjustmentRejectedError(LoyaltyError):
    """A manual points adjustment that cannot be made (no reason, too few points, a member
    or program unknown)."""


class AdjustmentConflictError(LoyaltyError):
    """An adjustment id was already used for a different adjustment."""


class MemberErasedError(LoyaltyError):
    """The member's personal data was erased: the id takes no new enrolment or data."""


class ApiKeyError(LoyaltyError):
    """An API key request that cannot be done (a name in use, a POS key without stores)."""


def describe_failure(error: BaseException) -> str:
    """A failure as it is stored and logged: a stable code and one sentence, never the SQL,
    its parameters or a traceback (they name members, and run to kilobytes)."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(error, LoyaltyError):
        return f"{error.code}: {_first_line(str(error))}"
    if isinstance(error, DBAPIError) and error.orig is not None:
        # The driver's own first line ("UNIQUE constraint failed: t.c", "deadlock
        # detected"); PostgreSQL puts the offending values on a DETAIL line after it.
        cause = error.orig
        return f"database_error: {type(cause).__name__}: {_first_line(str(cause))}"
    if isinstance(error, SQLAlchemyError):
        return f"database_error: {type(error).__name__}"
    if isinstance(error, OverflowError):
        return "out_of_range: a date or number is out of range"
    return (f"internal_error: {type(error).__name__} (run with LOYALTY_DEBUG=1 to log the "
            "details)")


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit - 1] + "…"
