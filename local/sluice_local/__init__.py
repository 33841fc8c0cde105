"""Sluice's local edge: the ``sluice`` command (plan, profile, simulate, up), load generation."""
