"""The `loyalty analytics` group with every report module's commands on it (retention,
cohorts and lapsed; clv; wallet and the loyalty matrix), registered once per process."""

from __future__ import annotations

from loyalty_engine.cli import analytics, analytics_clv, analytics_retention, analytics_wallet

# Registered here, not in cli/analytics.py: the report modules import its shared options,
# so registering there would be an import cycle.
analytics_retention.register(analytics.app)
analytics_clv.register(analytics.app)
analytics_wallet.register(analytics.app)

app = analytics.app
