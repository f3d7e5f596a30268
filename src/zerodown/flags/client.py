"""The Python SDK: evaluates flags locally from a cached copy of the definitions.

The copy comes, in order, from the disk cache (the last copy this client saw), else a bootstrap
file (our definitions document or Unleash's JSON), and is kept fresh by a background thread that
follows the service's change stream (SSE) or polls the definitions with an ETag. When the service
is down the client keeps evaluating its last copy and keeps retrying with backoff.

    with FlagClient("http://127.0.0.1:7070", token=..., cache_path="flags.json") as flags:
        if flags.is_enabled("new-checkout", EvalContext(user_id="42")):
            ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from zerodown.core.errors import ZerodownError
from zerodown.flags.context import current_context, record_variant
from zerodown.flags.evaluate import EvalContext, Evaluation, evaluate
from zerodown.flags.model import Flag
from zerodown.flags.ofrep import flag_value
from zerodown.flags.unleash import UnleashFormatError, flags_from_unleash

log = logging.getLogger("zerodown.flags.client")

_EMPTY = EvalContext()


class FlagClientError(ZerodownError):
    """A bootstrap or cache file the client cannot read; the message names the file."""


def load_definitions(data: Mapping[str, Any], source: str) -> tuple[int, dict[str, Flag]]:
    """Our definitions document (`{"version", "flags"}`) or Unleash's (`{"features"}`)."""
    try:
        if "features" in data:
            flags = flags_from_unleash(data)
            return 0, {f.key: f for f in flags}
        raw = data.get("flags")
        if not isinstance(raw, list):
            raise FlagClientError(f"{source}: needs `flags` (zerodown) or `features` (Unleash)")
        flags = [Flag.model_validate(f) for f in raw]
        return int(data.get("version", 0)), {f.key: f for f in flags}
    except (ValidationError, UnleashFormatError, TypeError, ValueError) as e:
        raise FlagClientError(f"{source}: {e}") from None


def load_definitions_file(path: str | Path) -> tuple[int, dict[str, Flag]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FlagClientError(f"{path}: cannot read flag definitions: {e}") from None
    if not isinstance(data, dict):
        raise FlagClientError(f"{path}: flag definitions must be a JSON object")
    return load_definitions(data, str(path))


class FlagClient:
    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        usage_token: str | None = None,
        cache_path: str | Path | None = None,
        bootstrap: str | Path | Mapping[str, Any] | None = None,
        mode: Literal["stream", "poll"] = "stream",
        poll_interval: float = 10.0,
        usage_interval: float = 60.0,
        max_backoff: float = 10.0,
        start: bool = True,
    ):
        self._url = url.rstrip("/") if url else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Usage reports change state (the stale-flag report), so the controller takes them only
        # with the admin token; reads may use a read token.
        reporter = usage_token or token
        self._usage_headers = {"Authorization": f"Bearer {reporter}"} if reporter else {}
        self._report_usage = True
        self._cache_path = Path(cache_path) if cache_path else None
        self._mode = mode
        self._poll_interval = poll_interval
        self._usage_interval = usage_interval
        self._max_backoff = max_backoff
        self._version = -1
        self._flags: dict[str, Flag] = {}
        self._used: set[str] = set()
        self._last_usage = time.monotonic()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []
        self._http: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.source = "empty"

        if self._cache_path and self._cache_path.exists():
            try:
                self._version, self._flags = load_definitions_file(self._cache_path)
                self.source = "cache"
            except FlagClientError as e:
                log.warning("ignoring the flag cache: %s", e)
        if self.source == "empty" and bootstrap is not None:
            if isinstance(bootstrap, Mapping):
                self._version, self._flags = load_definitions(bootstrap, "bootstrap")
            else:
                self._version, self._flags = load_definitions_file(bootstrap)
            self._version = min(self._version, 0)  # any server copy is newer than a bootstrap
            self.source = "bootstrap"
        if start and self._url:
            self.start()

    # --- evaluation (hot path: no locks, no I/O) ------------------------------------------------

    def evaluate(self, key: str, ctx: EvalContext | None = None) -> Evaluation | None:
        flags = self._flags
        flag = flags.get(key)
        if flag is None:
            return None
        if ctx is None:
            ctx = current_context.get() or _EMPTY
        result = evaluate(flag, ctx, flags=flags)
        self._used.add(key)
        record_variant(key, flag_value(flag, result)[2])
        return result

    def is_enabled(self, key: str, ctx: EvalContext | None = None, default: bool = False) -> bool:
        result = self.evaluate(key, ctx)
        return default if result is None else result.enabled

    def variant(self, key: str, ctx: EvalContext | None = None) -> Evaluation:
        result = self.evaluate(key, ctx)
        return result if result is not None else Evaluation(key, False)

    def get_flag(self, key: str) -> Flag | None:
        return self._flags.get(key)

    @property
    def flags(self) -> Mapping[str, Flag]:
        return self._flags

    @property
    def version(self) -> int:
        return self._version

    def on_change(self, callback: Callable[[int], None]) -> None:
        self._listeners.append(callback)

    def wait_until_ready(self, timeout: float) -> bool:
        """True once a copy came from the service (not just from cache or bootstrap)."""
        return self._ready.wait(timeout)

    def wait_for_version(self, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._version < version and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._version >= version

    # --- keeping the copy fresh -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or not self._url:
            return
        self._http = httpx.Client(
            headers=self._headers, timeout=httpx.Timeout(10.0, read=45.0), trust_env=False
        )
        self._thread = threading.Thread(target=self._run, name="zerodown-flags", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # A blocked stream read only returns when its socket is shut down under it.
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)
        if self._http is not None:
            self._flush_usage()
            self._http.close()

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _apply(self, data: Mapping[str, Any]) -> None:
        version, flags = load_definitions(data, f"{self._url}")
        with self._lock:
            if version == self._version and self._ready.is_set():
                return
            self._version, self._flags = version, flags
            self.source = "service"
        self._ready.set()
        self._write_cache(data)
        for listener in list(self._listeners):
            try:
                listener(version)
            except Exception:  # a listener's bug must not stop the updates
                log.exception("flag change listener failed")

    def _write_cache(self, data: Mapping[str, Any]) -> None:
        if self._cache_path is None:
            return
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache_path.parent, prefix=".flags-")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self._cache_path)  # atomic: a reader never sees half a file
        except OSError as e:
            log.warning("cannot write the flag cache %s: %s", self._cache_path, e)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self._mode == "stream":
                    self._follow_stream()
                else:
                    self._poll_once()
                    self._stop.wait(self._poll_interval)
                backoff = 0.2
                self.last_error = None
            except (httpx.HTTPError, FlagClientError, ValueError) as e:
                if self._stop.is_set():
                    break
                self.last_error = str(e) or type(e).__name__
                log.warning("flag service unreachable (%s); using the last copy", self.last_error)
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self._max_backoff)
            self._maybe_flush_usage()

    def _poll_once(self) -> None:
        assert self._http is not None
        headers = {"If-None-Match": f'"{self._version}"'} if self._ready.is_set() else {}
        r = self._http.get(f"{self._url}/api/flags/definitions", headers=headers)
        if r.status_code == 304:
            return
        r.raise_for_status()
        self._apply(r.json())

    def _follow_stream(self) -> None:
        assert self._http is not None
        with self._http.stream("GET", f"{self._url}/api/flags/stream") as r:
            self._response = r
            try:
                r.raise_for_status()
                for event, data in _sse_events(r.iter_lines()):
                    if self._stop.is_set():
                        return
                    if event == "definitions":
                        self._apply(json.loads(data))
                    self._maybe_flush_usage()
            finally:
                self._response = None
        if not self._stop.is_set():
            raise httpx.RemoteProtocolError("the flag stream ended")

    def _maybe_flush_usage(self) -> None:
        if time.monotonic() - self._last_usage >= self._usage_interval:
            self._last_usage = time.monotonic()
            self._flush_usage()

    def _flush_usage(self) -> None:
        if not self._used or self._http is None or not self._report_usage:
            return
        used, self._used = self._used, set()
        try:
            response = self._http.post(
                f"{self._url}/api/flags/usage",
                json={"keys": sorted(used)},
                headers=self._usage_headers,
                timeout=5,
            )
        except httpx.HTTPError:
            self._used |= used  # try again next time
            return
        if response.status_code in (401, 403):
            self._report_usage = False
            log.warning(
                "flag usage reports need the controller's admin token; pass usage_token= "
                "(the stale-flag report will not see this app's evaluations)"
            )


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from Server-Sent Events lines."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            yield "comment", ""  # a heartbeat: lets the reader do periodic work
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
