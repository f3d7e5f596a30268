"""Driving a controller from another process: what the CLI, the demo and the benches share.

- `client`: the controller's HTTP API (NotRunning when no controller answers, ApiError with the
  controller's own words when it refuses);
- `process`: starting a controller and waiting until it answers, shutting it down (bounded);
- `offline`: what can be known of a service while no controller runs (its store, its leftovers).

Nothing here imports a concrete driver: the state store is opened through `zerodown.drivers`,
as the spec's `state.url` names it.
"""
