"""What a program owes, pure: the money value of points, the liability, the breakage
development triangle and its projection, the points roll-forward and the IFRS 15 schedule.

No I/O and no clock: the figures come in as integers (points, money in minor units) already
grouped by the records layer (records/ledger_reports.py)."""
