"""tools/serve.py: the runtime embedded in an HTTP service, started on 127.0.0.1 and stopped by the test."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgenn.runtime import Model

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 20


def load_serve_module():
    spec = importlib.util.spec_from_file_location("edgenn_tools_serve", ROOT / "tools" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = load_serve_module()


@pytest.fixture(scope="module")
def model(exported):
    return Model(exported("lenet5"), providers="cpu", threads=1)


@pytest.fixture(scope="module")
def url(model):
    server = serve.make_server(model, "127.0.0.1", 0)
    thread = serve.serve_in_thread(server)
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT_S)
    assert not thread.is_alive()


def post(url: str, body: bytes, content_type: str = "image/png") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def png_of(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.kron(image, np.ones((8, 8))) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def right_digits(model, digits):
    """Test digits the model classifies right (so a wrong answer can only come from the service)."""
    predicted = model.predict(digits.test.inputs(model.preprocessing))["output"].argmax(axis=1)
    return np.flatnonzero(predicted == digits.test.labels)[:16]


def test_service_classifies_a_digit_picture(url, digits, right_digits):
    index = int(right_digits[0])
    status, data = post(f"{url}/classify?top_k=2", png_of(digits.test.images[index]))
    assert status == 200, data
    assert data["read_as"] == "picture" and len(data["predictions"][0]) == 2
    assert data["predictions"][0][0]["label"] == str(digits.test.labels[index])


def test_service_classifies_a_json_batch(url, model, digits):
    inputs = digits.test.inputs(model.preprocessing)[:3]
    status, data = post(f"{url}/classify", json.dumps({"input": inputs.tolist()}).encode(), "application/json")
    assert status == 200, data
    assert data["read_as"] == "batch"
    assert [p[0]["label"] for p in data["predictions"]] == [r[0].label for r in model.classify(inputs, 1)]


def test_service_answers_many_clients_at_once(url, digits, right_digits):
    answers, errors = [], []

    def client(index: int) -> None:
        try:
            answers.append((index, post(f"{url}/classify?top_k=1", png_of(digits.test.images[index]))))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(int(i),)) for i in right_digits[:8]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT_S)
    assert errors == [] and len(answers) == 8
    for index, (status, data) in answers:
        assert status == 200 and data["predictions"][0][0]["label"] == str(digits.test.labels[index])


def test_service_health_and_bad_requests(url):
    with urllib.request.urlopen(f"{url}/health", timeout=TIMEOUT_S) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["model"]["labels"] == [str(d) for d in range(10)]
    status, data = post(f"{url}/classify", b"not a picture at all")
    assert status == 400 and data["error"].startswith("cannot decode picture")
    status, data = post(f"{url}/classify?top_k=zero", png_of(np.eye(8)))
    assert status == 400 and "top_k must be a whole number" in data["error"]
    status, data = post(f"{url}/classify", b"[[1, 2], [3]]", "application/json")
    assert status == 400 and "ragged" in data["error"]
    status, data = post(f"{url}/classify", b"[1, 2, 3]", "application/json")
    assert status == 400 and "neither a batch" in data["error"]
    status, data = post(f"{url}/nowhere", b"x")
    assert status == 404


def test_service_refuses_oversized_bodies_before_reading_them(url):
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        connection.putrequest("POST", "/classify")
        connection.putheader("Content-Length", str(serve.MAX_BODY_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_service_script_starts_serves_and_stops(model):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "serve.py"), model.path, "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        first_line = _read_line(process, TIMEOUT_S * 3)
        assert first_line.startswith(f"serving {model.path} on http://127.0.0.1:"), first_line
        address = first_line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(f"{address}/health", timeout=TIMEOUT_S) as response:
            assert json.loads(response.read())["model"]["inputs"][0]["name"] == "input"
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT_S)


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of `process`, or a failure after `timeout` seconds (never a hang)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        process.kill()
        pytest.fail(f"serve.py printed nothing in {timeout} s; stderr: {process.stderr.read()[:500]}")
    return lines[0].strip()


def test_service_script_fails_cleanly_on_a_missing_model(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "serve.py"), str(tmp_path / "absent.onnx"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 3,
        cwd=ROOT,
    )
    assert done.returncode == 1 and done.stderr.strip() == f"error: model file not found: {tmp_path / 'absent.onnx'}"
