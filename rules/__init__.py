"""The example programs; shipped inside the package as loyalty_engine.examples (pyproject.toml).

Only the *.yaml files here are programs. This file makes the folder a regular package, which
an editable install can map into loyalty_engine as a wheel does."""
