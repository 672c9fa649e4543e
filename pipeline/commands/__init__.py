"""Operator sub-commands of ``pipeline``: one module per command, registered in ``pipeline.cli``."""
