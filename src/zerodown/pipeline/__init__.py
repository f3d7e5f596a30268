"""What runs around a rollout: the analysis runner, the test gate, smoke checks, notifications."""
