"""`edgenn serve` as the process a service manager runs: up, answering, and stopped by SIGTERM with nothing left."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ray_processes

pytest.importorskip("ray.serve", reason="edgenn serve needs Ray Serve: pip install 'edgenn[serve]'")

LENET = Path(__file__).resolve().parents[1] / "models" / "lenet5" / "model.onnx"


def _ray_processes() -> list[str]:
    return ray_processes()


def test_sigterm_stops_the_service_and_ray_with_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-c", "from edgenn.entry import main; main()", "serve", str(LENET), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.time() + 120, None
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)  # refused until Ray's proxy is up, then 404 until the application is ready
        assert status == 200, server.stderr.read() if server.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10) as response:
            assert json.loads(response.read())["inputs"][0]["name"] == "input"
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    errors = server.stderr.read()
    assert "SIGTERM received" not in errors  # Ray's native stack dump: the handler edgenn sets replaces it
    deadline = time.time() + 30
    while time.time() < deadline and _ray_processes():
        time.sleep(0.5)
    assert not _ray_processes(), _ray_processes()
