"""Relationship measures, pure: RFM scores and segment maps, retention and cohorts, lapse,
the CLV models (BG/NBD, Gamma-Gamma), share of wallet and the loyalty matrix."""
