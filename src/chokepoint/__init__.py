"""Chokepoint: an emulator of national internet-censorship gateways."""

__version__ = "0.1.0"
