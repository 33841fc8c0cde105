"""Local mode: a pipeline as local processes under real CPU quotas and a scaling policy."""
