"""Where a service's state lives: `.zerodown/` beside its zerodown.yaml."""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

UNIX_SOCKET_MAX = 100  # sun_path holds 108 bytes; keep a margin


@dataclass(frozen=True)
class Paths:
    spec: Path

    @classmethod
    def for_spec(cls, spec: str | Path) -> Paths:
        return cls(Path(spec).resolve())

    @property
    def spec_dir(self) -> Path:
        return self.spec.parent

    @property
    def state(self) -> Path:
        return self.spec_dir / ".zerodown"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def screenshots(self) -> Path:
        """What failed browser smoke checks saw."""
        return self.state / "screenshots"

    @property
    def token_file(self) -> Path:
        return self.state / "token"

    @property
    def controller_file(self) -> Path:
        return self.state / "controller.json"

    @property
    def controller_errors(self) -> Path:
        """The controller's stderr since it was last started: why it stopped, if it did."""
        return self.logs / "controller.stderr"

    @property
    def router_state(self) -> Path:
        return self.state / "router-table.json"

    @property
    def router_pid(self) -> Path:
        return self.state / "router.pid"

    @property
    def router_socket(self) -> Path:
        return self.router_worker_socket(0)

    def router_worker_socket(self, worker: int) -> Path:
        """The admin socket of router worker `worker` (`router.workers`; 0 is the first, and
        the only one by default)."""
        suffix = f"-w{worker}" if worker else ""
        path = self.state / f"router{suffix}.sock"
        if len(str(path)) <= UNIX_SOCKET_MAX:
            return path
        # Deep directories overflow sun_path: use a short, stable name in the temp directory.
        digest = hashlib.sha256(str(self.state).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"zerodown-{digest}{suffix}.sock"

    def router_worker_pid(self, worker: int) -> Path:
        return self.router_pid if worker == 0 else self.state / f"router-w{worker}.pid"

    def router_worker_pids(self) -> list[Path]:
        """The pid files of router workers after the first (whichever `router.workers` ran)."""
        return sorted(self.state.glob("router-w*.pid"))

    def ensure(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        if not self.token_file.exists():
            self.token_file.touch(mode=0o600)
            self.token_file.write_text(secrets.token_urlsafe(32))

    def token(self) -> str:
        return self.token_file.read_text().strip()
