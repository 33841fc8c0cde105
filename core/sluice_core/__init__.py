"""Sluice's decision core: the pipeline spec, profiles, planner, scaling policies and simulator.

Pure: the standard library and PyYAML only, no I/O beyond reading the files a caller names.
"""
