"""nginx as zerodown's router (`router: {kind: nginx}`): the route table rendered as nginx
configuration and applied by graceful reloads. See docs/router-nginx.md.

Modules: `render` (table → configuration text, pure), `process` (the nginx master zerodown
starts and supervises), `driver` (the Router driver: coalesced reloads, drain tracking, attach
mode).
"""
