"""The purchase event: validation, minor units, the body hash and readable rejections."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from loyalty_engine.domain.events import PurchaseEvent, describe_errors
from loyalty_engine.domain.purchases import LineItem

from .builders import event_dict

COFFEE: list[tuple[str, str, str, str]] = [
    ("FLAT-WHITE", "coffee", "2", "3.20"),
    ("CROISSANT", "pastry", "1", "1.00"),
]


def valid_body(**overrides: Any) -> dict[str, Any]:
    body = event_dict(COFFEE, total="7.40")
    body.update(overrides)
    return body


def errors_of(body: dict[str, Any], *, as_json: bool = False) -> list[str]:
    """describe_errors() of a body that must be rejected."""
    with pytest.raises(ValidationError) as info:
        if as_json:
            PurchaseEvent.model_validate_json(json.dumps(body))
        else:
            PurchaseEvent.model_validate(body)
    return describe_errors(info.value)


def only_error(body: dict[str, Any], *, as_json: bool = False) -> str:
    messages = errors_of(body, as_json=as_json)
    assert len(messages) == 1, messages
    return messages[0]


# --- valid events ----------------------------------------------------------------------------


def test_valid_event_becomes_a_purchase_in_minor_units() -> None:
    purchase = PurchaseEvent.model_validate(valid_body()).to_purchase()

    assert purchase.key == ("AMS-01", "T-1001")
    assert purchase.member_id == "M-42"
    assert purchase.currency == "EUR"
    assert purchase.total_minor == 740
    assert purchase.items == (
        LineItem(line_no=1, sku="FLAT-WHITE", category="coffee", quantity_milli=2000,
                 unit_price_minor=320, amount_minor=640),
        LineItem(line_no=2, sku="CROISSANT", category="pastry", quantity_milli=1000,
                 unit_price_minor=100, amount_minor=100),
    )


def test_occurred_at_is_normalised_to_utc() -> None:
    purchase = PurchaseEvent.model_validate(valid_body()).to_purchase()
    assert purchase.occurred_at == datetime(2026, 3, 14, 8, 30, tzinfo=UTC)
    assert purchase.occurred_at.utcoffset() is not None
    assert purchase.occurred_at.tzinfo == UTC


def test_the_same_event_from_json_gives_the_same_purchase() -> None:
    from_python = PurchaseEvent.model_validate(valid_body()).to_purchase()
    from_json = PurchaseEvent.model_validate_json(json.dumps(valid_body())).to_purchase()
    assert from_json == from_python


def test_event_survives_a_json_round_trip() -> None:
    event = PurchaseEvent.model_validate(valid_body())
    again = PurchaseEvent.model_validate_json(event.model_dump_json())
    assert again.to_purchase() == event.to_purchase()


def test_integer_amounts_are_accepted() -> None:
    body = event_dict([("MUG", "merch", "1", "12")], total="12")
    body["items"][0]["unit_price"] = 12
    body["total"] = 12
    purchase = PurchaseEvent.model_validate_json(json.dumps(body)).to_purchase()
    assert purchase.total_minor == 1200


def test_quantity_defaults_to_one() -> None:
    body = event_dict([("MUG", "merch", "1", "12.00")])
    del body["items"][0]["quantity"]
    purchase = PurchaseEvent.model_validate(body).to_purchase()
    assert purchase.items[0].quantity_milli == 1000
    assert purchase.items[0].amount_minor == 1200


def test_anonymous_purchase_without_member_id_is_allowed() -> None:
    body = valid_body()
    del body["member_id"]
    purchase = PurchaseEvent.model_validate(body).to_purchase()
    assert purchase.member_id is None
    assert purchase.total_minor == 740


@pytest.mark.parametrize(
    ("quantity", "unit_price", "amount_minor", "total"),
    [
        ("0.5", "1.99", 100, "1.00"),  # 99.5 cents rounds half-up to 100
        ("0.5", "1.97", 99, "0.99"),  # 98.5 -> 99
        ("0.25", "1.98", 50, "0.50"),  # 49.5 -> 50
        ("0.333", "3.00", 100, "1.00"),  # 99.9 -> 100
        ("1.234", "1.00", 123, "1.23"),  # 123.4 -> 123
        ("2.5", "0.01", 3, "0.03"),  # 2.5 -> 3 (half-up, not half-even)
    ],
)
def test_fractional_quantity_rounds_the_line_amount_half_up(
    quantity: str, unit_price: str, amount_minor: int, total: str
) -> None:
    body = event_dict([("BEANS", "coffee-beans", quantity, unit_price)], total=total)
    item = PurchaseEvent.model_validate(body).to_purchase().items[0]
    assert item.amount_minor == amount_minor
    assert item.quantity_milli == int(Decimal(quantity) * 1000)


def test_fractional_quantity_total_must_use_the_rounded_line_amount() -> None:
    # 0.5 x 1.99 = 0.995, which the line rounds to 1.00; 0.99 is therefore wrong.
    body = event_dict([("BEANS", "coffee-beans", "0.5", "1.99")], total="0.99")
    assert "1.00" in only_error(body)


def test_jpy_has_no_decimals() -> None:
    body = event_dict([("ONIGIRI", "food", "2", "150")], currency="JPY", total="300")
    purchase = PurchaseEvent.model_validate(body).to_purchase()
    assert purchase.total_minor == 300
    assert purchase.items[0].unit_price_minor == 150


def test_bhd_has_three_decimals() -> None:
    body = event_dict([("TEA", "drinks", "1", "1.250")], currency="BHD", total="1.25")
    assert PurchaseEvent.model_validate(body).to_purchase().total_minor == 1250


# --- body_hash -------------------------------------------------------------------------------


def body_hash(body: dict[str, Any]) -> str:
    return PurchaseEvent.model_validate(body).to_purchase().body_hash


def test_body_hash_is_stable_for_the_same_body() -> None:
    assert body_hash(valid_body()) == body_hash(valid_body())
    assert len(body_hash(valid_body())) == 64


def test_body_hash_ignores_how_amounts_are_written() -> None:
    a = event_dict([("CAKE", "pastry", "1", "12.5")], total="12.5")
    b = event_dict([("CAKE", "pastry", "1.000", "12.50")], total="12.50")
    c = event_dict([("CAKE", "pastry", "1", "1.25e1")], total="12.500")
    assert body_hash(a) == body_hash(b) == body_hash(c)


def test_body_hash_is_the_same_for_the_same_instant_in_different_offsets() -> None:
    amsterdam = valid_body(occurred_at="2026-03-14T09:30:00+01:00")
    utc = valid_body(occurred_at="2026-03-14T08:30:00Z")
    new_york = valid_body(occurred_at="2026-03-14T04:30:00-04:00")
    assert body_hash(amsterdam) == body_hash(utc) == body_hash(new_york)


@pytest.mark.parametrize(
    "change",
    [
        {"occurred_at": "2026-03-14T09:30:01+01:00"},
        {"occurred_at": "2026-03-14T09:30:00+02:00"},
        {"member_id": "M-43"},
        {"member_id": None},
        {"transaction_id": "T-1002"},
        {"store_id": "AMS-02"},
    ],
)
def test_body_hash_changes_when_the_event_changes(change: dict[str, Any]) -> None:
    assert body_hash(valid_body(**change)) != body_hash(valid_body())


@pytest.mark.parametrize(
    "lines",
    [
        [("FLAT-WHITE", "coffee", "2", "3.20"), ("CROISSANT", "pastry", "1", "1.10")],
        [("FLAT-WHITE", "coffee", "1", "3.20"), ("CROISSANT", "pastry", "1", "1.00")],
        [("LATTE", "coffee", "2", "3.20"), ("CROISSANT", "pastry", "1", "1.00")],
        [("FLAT-WHITE", "drinks", "2", "3.20"), ("CROISSANT", "pastry", "1", "1.00")],
    ],
)
def test_body_hash_changes_when_the_basket_changes(lines: list[tuple[str, str, str, str]]) -> None:
    assert body_hash(event_dict(lines)) != body_hash(valid_body())


def test_body_hash_differs_between_currencies() -> None:
    eur = event_dict([("X", "c", "1", "100")], currency="EUR", total="100")
    jpy = event_dict([("X", "c", "1", "10000")], currency="JPY", total="10000")
    # Same minor-unit number (10000), different money.
    assert body_hash(eur) != body_hash(jpy)


# --- rejections ------------------------------------------------------------------------------


def test_naive_occurred_at_is_rejected() -> None:
    message = only_error(valid_body(occurred_at="2026-03-14T09:30:00"))
    assert message.startswith("occurred_at: ")
    assert any(word in message.lower() for word in ("timezone", "time zone", "offset")), message


def test_unknown_currency_is_rejected() -> None:
    message = only_error(valid_body(currency="XYZ"))
    assert "XYZ is not an ISO 4217 currency code" in message


def test_unknown_currency_message_names_the_field() -> None:
    # Every other rejection names the field it is about ("total ...", "items[0].quantity: ...").
    message = only_error(valid_body(currency="XYZ"))
    assert message.startswith("currency"), message


@pytest.mark.parametrize("currency", ["eur", "XAU"])
def test_unusable_currency_is_rejected(currency: str) -> None:
    message = only_error(valid_body(currency=currency))
    assert currency in message


@pytest.mark.parametrize("currency", ["EU", "EURO"])
def test_currency_of_the_wrong_length_is_rejected(currency: str) -> None:
    message = only_error(valid_body(currency=currency))
    assert message.startswith("currency: ")


def test_negative_total_is_rejected() -> None:
    message = only_error(valid_body(total="-7.40"))
    assert "total must not be negative" in message


def test_negative_unit_price_is_rejected_naming_the_item() -> None:
    body = event_dict([("REFUND", "coffee", "1", "-3.20")], total="0")
    message = only_error(body)
    assert "items[0].unit_price must not be negative" in message


def test_total_with_too_many_decimals_is_rejected() -> None:
    message = only_error(valid_body(total="7.401"))
    assert "total 7.401 has more decimals than EUR allows (2)" in message


def test_unit_price_with_too_many_decimals_is_rejected_naming_the_item() -> None:
    body = event_dict([("A", "c", "1", "1.00"), ("B", "c", "1", "3.205")], total="4.21")
    message = only_error(body)
    assert "items[1].unit_price 3.205 has more decimals than EUR allows (2)" in message


def test_decimals_in_jpy_are_rejected() -> None:
    body = event_dict([("A", "c", "1", "7.5")], currency="JPY", total="7.5")
    assert "more decimals than JPY allows (0)" in only_error(body)


def test_float_total_in_json_is_rejected() -> None:
    message = only_error(valid_body(total=7.4), as_json=True)
    assert message.startswith("total: ")
    assert 'decimal string such as "12.50"' in message


def test_float_unit_price_in_json_is_rejected_naming_the_item() -> None:
    body = valid_body()
    body["items"][1]["unit_price"] = 1.0
    message = only_error(body, as_json=True)
    assert message.startswith("items[1].unit_price: ")
    assert "not a JSON number" in message


def test_boolean_amount_is_rejected() -> None:
    message = only_error(valid_body(total=True), as_json=True)
    assert message.startswith("total: ")


def test_total_that_is_not_the_sum_of_the_items_is_rejected() -> None:
    message = only_error(valid_body(total="7.50"))
    assert "total 7.50 does not equal the sum of the items" in message
    assert "7.40" in message  # the sum the items actually come to


def test_unknown_top_level_field_is_rejected() -> None:
    assert only_error(valid_body(colour="red")) == "colour: unknown field"


def test_unknown_item_field_is_rejected_with_its_path() -> None:
    body = valid_body()
    body["items"][1]["discount"] = "0.10"
    assert only_error(body) == "items[1].discount: unknown field"


def test_empty_items_are_rejected() -> None:
    message = only_error(valid_body(items=[], total="0"))
    assert message.startswith("items: ")
    assert "at least 1 item" in message


@pytest.mark.parametrize("quantity", ["0", "-1", "0.000"])
def test_zero_or_negative_quantity_is_rejected(quantity: str) -> None:
    body = event_dict([("A", "c", quantity, "1.00")], total="0")
    message = only_error(body)
    assert message.startswith("items[0].quantity: ")
    assert "greater than 0" in message


def test_quantity_with_more_than_three_decimals_is_rejected() -> None:
    body = event_dict([("A", "c", "1.2345", "1.00")], total="1.23")
    assert only_error(body).startswith("items[0].quantity: ")


@pytest.mark.parametrize("field", ["transaction_id", "store_id", "occurred_at", "currency",
                                   "total", "items"])
def test_missing_required_field_is_named(field: str) -> None:
    body = valid_body()
    del body[field]
    assert f"{field}: required field is missing" in errors_of(body)


def test_several_field_problems_are_all_reported() -> None:
    body = valid_body(occurred_at="2026-03-14T09:30:00", colour="red")
    body["items"][0]["quantity"] = "0"
    messages = errors_of(body)
    assert len(messages) == 3
    assert any(m.startswith("occurred_at: ") for m in messages)
    assert "colour: unknown field" in messages
    assert any(m.startswith("items[0].quantity: ") for m in messages)


def test_describe_errors_names_the_csv_line_of_an_item() -> None:
    body = valid_body()
    body["items"][1]["quantity"] = "0"
    with pytest.raises(ValidationError) as info:
        PurchaseEvent.model_validate(body)
    (message,) = describe_errors(info.value, item_lines=[7, 8])
    assert message.startswith("line 8: items[1].quantity: ")


@pytest.mark.parametrize("field", ["store_id", "transaction_id"])
def test_identifiers_must_not_be_empty_or_contain_control_characters(field: str) -> None:
    assert only_error(valid_body(**{field: ""})).startswith(f"{field}: ")
    assert only_error(valid_body(**{field: "T-1\n"})).startswith(f"{field}: ")


def test_event_is_immutable() -> None:
    event = PurchaseEvent.model_validate(valid_body())
    with pytest.raises(ValidationError):
        event.total = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(("override", "field", "fragment"), [
    # issue 14, item 8: each was accepted before and meant something no till intended.
    ({"occurred_at": 0}, "occurred_at", "not a number"),
    ({"occurred_at": 1767225600.5}, "occurred_at", "not a number"),
    ({"total": " 7.40 "}, "total", "not a decimal number"),
    ({"total": "+7.40"}, "total", "not a decimal number"),
    ({"total": "\uff17.\uff14\uff10"}, "total", "not a decimal number"),  # fullwidth 7.40
    ({"total": "\u0667.\u0664\u0660"}, "total", "not a decimal number"),  # Arabic-Indic
    ({"total": "1_000"}, "total", "not a decimal number"),
    ({"store_id": "AMS-01 "}, "store_id", "may not begin or end with a space"),
    ({"store_id": " AMS-01"}, "store_id", "may not begin or end with a space"),
    ({"member_id": "M-1\u0085"}, "member_id", "control"),          # C1 next line
    ({"member_id": "M-\u20281"}, "member_id", "line-separator"),
    ({"transaction_id": "T-\u202e1"}, "transaction_id", "text-direction"),  # RTL override
])
def test_lenient_spellings_are_refused_naming_the_field(
        override: dict[str, Any], field: str, fragment: str) -> None:
    message = only_error(valid_body(**override))
    assert message.startswith(f"{field}: ") and fragment in message, message


def test_strict_spellings_still_accepted_are_the_same_amount() -> None:
    for spelling in ("7.40", "7.4", "7.400", "740e-2", "0.0074E3"):
        assert PurchaseEvent.model_validate(valid_body(total=spelling)).to_purchase() \
            .total_minor == 740, spelling
    # Inner spaces are part of an id; only the ends are refused.
    assert PurchaseEvent.model_validate(valid_body(member_id="Anna de Vries")).member_id \
        == "Anna de Vries"
