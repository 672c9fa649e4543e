"""Detectors: one interface (base.py), one result shape, several implementations."""
