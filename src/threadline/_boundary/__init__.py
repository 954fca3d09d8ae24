"""Boundaries: threads, worker processes and subprocesses, over one hand-off and arrival."""
