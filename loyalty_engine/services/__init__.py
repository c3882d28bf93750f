"""Use cases: each function owns its transaction; entry points call exactly one of them."""
