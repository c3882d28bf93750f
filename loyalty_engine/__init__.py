"""loyalty-engine: loyalty and frequency programs as files, purchases awarded exactly once."""

__version__ = "0.1.0"
