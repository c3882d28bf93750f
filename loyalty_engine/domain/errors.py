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


class NoPurchasesError(LoyaltyError):
    """A relationship measure asked for as of an instant before the program's first counted
    purchase (nothing to measure yet)."""


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
