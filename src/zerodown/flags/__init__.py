"""Feature flags: model and Unleash-exact evaluation (pure: model, evaluate, stale, steps,
unleash, ofrep), stores (stores/), the HTTP API router (api), the Python SDK (client), an
OpenFeature provider (openfeature) and ASGI/WSGI middleware (middleware). See docs/flags.md."""
