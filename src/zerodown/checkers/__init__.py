"""The checks a release passes, run: the test gate, smoke checks and analysis runs.

Each runner does the I/O of one check and returns its outcome; `core.checks` says when a rollout
needs which check, and `engine.check_tasks` runs the ones the status holds as running.
"""
