"""Keys added to the language leave the programs that do not use them as they were stored.

A program's content hash decides whether applying a file stores a new version. These are
the hashes of the shipped programs and fixtures as the release before issue 16 computed
them (main at 37eee5a): a new key must stay out of the dump while at its default
(rules/values.py `unused`, `at_default`), or every deployment would store a new version of
an unchanged file on upgrade.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalty_engine.rules.loader import load_program_text

ROOT = Path(__file__).resolve().parents[2]
STORED = {
    "rules/bean-there-coffee.yaml":
        "f501cc6fa8c5adfd3927f478b1b123968a43ea3a3eba626278c5f861f1dbf8a3",
    "rules/big-box-warehouse.yaml":
        "d5b82469b3674aa8c7f562952426e719fdb93b713159dc5d0cfeb1941783152b",
    "rules/campus-books.yaml":
        "28cb75d13342d62ee59c43ff71b496c3ecdcdad62d791e156c39483d76179aef",
    "rules/fresh-market-grocery.yaml":
        "5bd87fbbf6e497205af02952876b5a1d504714aca4d96f1446d22d5f3cc06f7f",
    "rules/glow-beauty.yaml":
        "783ea25ac78ce65c7c64de88374fc5b1dd0e58f7484c01aa5b3663e21c09358c",
    "tests/fixtures/programs/expiry-shop.yaml":
        "b4c7ed91f0f5cfd93e9eab8266becf66055e6fddb367e0034a346509d7918295",
    "tests/fixtures/rules/bean-there-basic.yaml":
        "88b5ccb0354d429ef7179c1e6a7a4535985374bb075c983e04806448b043e085",
}


@pytest.mark.parametrize("path", sorted(STORED))
def test_an_unchanged_file_keeps_the_hash_it_was_stored_with(path: str) -> None:
    loaded = load_program_text((ROOT / path).read_text(encoding="utf-8"), path)
    assert loaded.content_hash == STORED[path]
