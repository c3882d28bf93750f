"""The Alembic history; shipped inside the package as loyalty_engine.migrations (pyproject.toml).

This file makes the folder a regular package, which an editable install can map into
loyalty_engine as a wheel does."""
