"""``sluice profile``'s parts: the grid to measure, the quota cgroups, the worker runner,
the progress bar, and the assembly of profile records (docs/profiles.md)."""
