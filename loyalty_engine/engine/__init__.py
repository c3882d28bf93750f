"""The pure engine: (compiled program, event) -> decisions. No I/O, no clock."""

from loyalty_engine.engine.earning import evaluate_purchase, round_points
from loyalty_engine.engine.versions import version_in_force

__all__ = ["evaluate_purchase", "round_points", "version_in_force"]
