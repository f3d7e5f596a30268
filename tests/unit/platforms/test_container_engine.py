"""The container platform's dealings with the engine that need no engine: where its socket is
looked for (and what the error says when there is none), the engine's framed output streams,
the errors inside a pull's progress stream, and volume sources beside the spec."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from zerodown.core.errors import PermanentDriverError
from zerodown.platforms.container.engine import (
    EngineUnreachable,
    demultiplex,
    find_socket,
    stream_errors,
)
from zerodown.platforms.container.platform import ContainerPlatform


def test_docker_host_names_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        assert find_socket({"DOCKER_HOST": f"unix://{path}"}) == path


def test_a_missing_socket_says_where_it_looked_and_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable) as caught:
        find_socket({"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    said = str(caught.value)
    assert f"no container engine socket at {tmp_path}/nothing.sock" in said
    assert "podman system service --time 0" in said
    with pytest.raises(EngineUnreachable) as caught:
        find_socket({"XDG_RUNTIME_DIR": str(tmp_path)})
    if not Path("/var/run/docker.sock").is_socket():
        said = str(caught.value)
        assert "DOCKER_HOST (unset), /var/run/docker.sock, /run/podman/podman.sock" in said
        assert f"{tmp_path}/podman/podman.sock" in said


def test_an_engine_over_tcp_is_refused_with_what_to_set() -> None:
    with pytest.raises(PermanentDriverError, match="unix socket only"):
        find_socket({"DOCKER_HOST": "tcp://10.0.0.1:2375"})


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_framed_output_is_read_back_as_text() -> None:
    raw = frame(1, b"listening\n") + frame(2, b"Traceback\n") + frame(1, b"")
    assert demultiplex(raw) == "listening\nTraceback\n"
    assert demultiplex(b"plain output of a tty\n") == "plain output of a tty\n"


def test_errors_in_a_pull_stream_are_found() -> None:
    body = '{"status":"Pulling"}\n{"error":"manifest unknown","errorDetail":{}}\nnot json\n'
    assert stream_errors(body) == ["manifest unknown"]
    assert stream_errors('{"status":"Download complete"}') == []


def test_relative_volume_sources_start_beside_the_spec(tmp_path: Path) -> None:
    platform = ContainerPlatform(state_dir=tmp_path / "state", spec_dir=tmp_path, service="shop")
    assert platform._bind("./uploads:/uploads") == f"{tmp_path}/uploads:/uploads"
    assert platform._bind("/srv/x:/x:ro") == "/srv/x:/x:ro"
    assert platform._bind("named:/data") == "named:/data"
