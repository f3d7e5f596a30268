"""A valid zerodown.yaml that touches every part of the spec, for tests to break."""

from __future__ import annotations

from typing import Any

import yaml

FULL: dict[str, Any] = {
    "service": "shop",
    "instances": 2,
    "run": {
        "command": ["python3", "app.py", "{port}", "{version}"],
        "env": {"APP_VERSION": "{version}"},
        "drain": "3s",
        "stop_timeout": "5s",
    },
    "probes": {
        "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 50},
        "liveness": {"http": "/healthz", "period": "1s", "failure_threshold": 3},
        "readiness": {"tcp": {"port": 8080}, "period": "500ms", "timeout": "1s"},
    },
    "router": {"listen": "127.0.0.1:8080", "header_timeout": "10s"},
    "strategy": {
        "canary": {
            "steps": [
                {"set_weight": 10},
                {"pause": {"duration": "30s"}},
                {"analysis": {"templates": ["health"]}},
                {"set_weight": 50},
            ],
            "canary_scale": 1,
            "sticky": {"cookie": "zd_bucket"},
            "progress_deadline": "10m",
        }
    },
    "analysis": {
        "templates": {
            "health": {
                "metrics": [
                    {
                        "name": "error-rate",
                        "query": "error_rate",
                        "interval": "1s",
                        "count": 10,
                        "failure_condition": "result > 0.05",
                        "min_samples": 20,
                    },
                    {
                        "name": "p99",
                        "query": "latency_p99",
                        "compare": "baseline",
                        "max_increase": "20%",
                    },
                ]
            }
        }
    },
    "gate": {"command": ["pytest", "-q"], "timeout": "10m"},
    "smoke": {
        "timeout": "60s",
        "checks": [
            {"name": "home", "request": "GET /", "expect": {"status": 200}},
            {"name": "post", "request": "POST /x", "json": {"a": [1, 2.5]}},
        ],
    },
    "notify": [{"webhook": "http://127.0.0.1:9/hook", "events": ["started"], "retries": 2}],
}


def full_yaml() -> str:
    return yaml.safe_dump(FULL, sort_keys=False)
