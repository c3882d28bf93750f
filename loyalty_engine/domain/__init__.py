"""Pure domain values: money, purchases, decisions. No I/O, no clock."""
