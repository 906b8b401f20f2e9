"""edgenn serve: the HTTP API on a replica (called directly), and the real thing on a local Ray instance."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ray_processes

pytest.importorskip("ray.serve", reason="edgenn serve needs Ray Serve: pip install 'edgenn[serve]'")

from click.testing import CliRunner  # noqa: E402
from starlette.requests import Request  # noqa: E402

from edgenn.cli import cli  # noqa: E402
from edgenn.runtime import Model  # noqa: E402
from edgenn.serve import EdgennReplica, ServeOptions, serve_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "models" / "lenet5" / "model.onnx"
OPTIONS = ServeOptions(max_batch_size=8, batch_wait_ms=20, max_body_bytes=1024 * 1024)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def _call(replica: EdgennReplica, method: str, path: str, body: bytes = b"", content_type: str = "", query: str = ""):
    """One request through the replica's ASGI handler, without Ray: (status, JSON body)."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"content-type", content_type.encode())] if content_type else [],
    }
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    response = asyncio.run(replica(Request(scope, receive)))
    return response.status_code, json.loads(response.body)


@pytest.fixture(scope="module")
def replica() -> EdgennReplica:
    return EdgennReplica(str(LENET), OPTIONS.to_dict())


@pytest.fixture(scope="module")
def two_input_model(two_input_onnx) -> Path:
    return two_input_onnx


# ------------------------------------------------------------------------------ the API, directly
def test_predict_and_classify_answer_what_the_runtime_answers(replica):
    model = Model(LENET)
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    status, body = _call(replica, "POST", "/predict", json.dumps({"input": x.tolist()}).encode(), "application/json")
    assert status == 200
    np.testing.assert_allclose(np.array(body["output"]), model.predict(x)["output"], rtol=1e-6, atol=1e-6)
    one = io.BytesIO()
    np.save(one, x[0])  # one sample without its batch dim, as a raw .npy body
    status, body = _call(replica, "POST", "/predict", one.getvalue(), "application/x-npy")
    assert status == 200 and np.array(body["output"]).shape == (1, 10)
    picture = _png(255 - np.kron(np.eye(8) * 255, np.ones((2, 2))))
    status, body = _call(replica, "POST", "/classify", picture, "image/png", "top_k=2")
    expected = model.classify_picture(picture, 2)
    assert status == 200 and [p["label"] for p in body["predictions"]] == [c.label for c in expected]
    form = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + picture + b"\r\n--XyZ--\r\n"
    )
    status, body = _call(replica, "POST", "/classify", form, "multipart/form-data; boundary=XyZ", "top_k=2")
    assert status == 200 and [p["label"] for p in body["predictions"]] == [c.label for c in expected]
    status, body = _call(replica, "GET", "/model")
    assert status == 200 and body["inputs"][0]["name"] == "input" and len(body["labels"]) == 10


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "query", "status", "says"),
    [
        ("GET", "/nothing", b"", "", "", 404, "no endpoint /nothing"),
        ("PUT", "/predict", b"", "", "", 405, "/predict takes POST, not PUT"),
        ("GET", "/classify", b"", "", "", 405, "/classify takes POST, not GET"),
        ("POST", "/predict", b"x" * (2 * 1024 * 1024), "application/json", "", 413, "the most this server takes"),
        ("POST", "/predict", b"input=1", "text/plain", "", 415, "reads application/json"),
        ("POST", "/classify", b"{}", "application/json", "", 415, "reads a picture"),
        ("POST", "/predict", b'{"input": [1, 2', "application/json", "", 400, "not valid JSON"),
        ("POST", "/predict", b"[" * 100_000 + b"]" * 100_000, "application/json", "", 400, "nests deeper than 32"),
        ("POST", "/predict", b'{"image": [1]}', "application/json", "", 400, "the model's inputs are ['input']"),
        ("POST", "/predict", b'{"input": [[1, 2], [3]]}', "application/json", "", 400, "not a rectangular float32"),
        (
            "POST",
            "/predict",
            json.dumps({"input": np.zeros((1, 1, 8, 8)).tolist()}).encode(),
            "application/json",
            "",
            400,
            "input 'input'",
        ),
        ("POST", "/predict", b"\x93NUMPY garbage", "application/x-npy", "", 400, "not a .npy array"),
        ("POST", "/classify", b"not a picture", "image/png", "", 400, "not a picture edgenn can read"),
        ("POST", "/classify", b"", "image/png", "", 400, "is empty"),
        ("POST", "/classify", b"--B\r\n\r\n--B--", "multipart/form-data; boundary=B", "", 400, "holds no file"),
        ("POST", "/classify", _png(np.zeros((8, 8))), "image/png", "top_k=0", 400, "top_k must be"),
    ],
)
def test_bad_requests_get_their_status_and_one_line(replica, method, path, body, content_type, query, status, says):
    got, answer = _call(replica, method, path, body, content_type, query)
    assert got == status, answer
    assert says in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_a_picture_that_would_decompress_huge_is_refused_before_decoding(replica):
    huge = _png(np.zeros((12000, 12000)))  # about 165 KB of PNG, 144 million pixels
    assert len(huge) < 300_000
    status, answer = _call(replica, "POST", "/classify", huge, "image/png")
    assert status == 413 and "12000x12000" in answer["error"]


def test_what_a_model_cannot_serve_is_refused_per_request(two_input_model):
    two = EdgennReplica(str(two_input_model), OPTIONS.to_dict())
    status, answer = _call(two, "POST", "/classify", _png(np.zeros((8, 8))), "image/png")
    assert status == 400 and "not a one-input classifier" in answer["error"]
    status, answer = _call(two, "POST", "/predict", b"\x93NUMPY", "application/x-npy")
    assert status == 415 and "2 inputs (image, features)" in answer["error"]
    feeds = {"image": np.zeros((2, 1, 16, 16)).tolist(), "features": np.zeros((2, 5)).tolist()}
    status, answer = _call(two, "POST", "/predict", json.dumps(feeds).encode(), "application/json")
    assert status == 200 and np.array(answer["logits"]).shape[0] == 2


def test_serve_refuses_a_missing_or_invalid_model_before_ray_starts(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    for model, says in ((tmp_path / "nope.onnx", "not found"), (tmp_path / "bad.onnx", "not an ONNX model")):
        result = CliRunner().invoke(cli, ["serve", str(model), "--port", "8799"])
        assert result.exit_code == 1 and says in result.output
    import ray

    assert not ray.is_initialized()


def test_print_config_is_a_ray_serve_config(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    text = serve_config(LENET, ServeOptions(replicas=2, max_batch_size=32, threads=1))
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))  # Ray's own schema for `serve deploy`
    application = schema.applications[0]
    assert application.import_path == "edgenn.serve:app_builder"
    assert application.args["model"] == str(LENET) and application.args["max_batch_size"] == 32
    assert application.deployments[0].num_replicas == 2
    result = CliRunner().invoke(cli, ["serve", str(LENET), "--print-config", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0 and yaml.safe_load((tmp_path / "s.yaml").read_text())["applications"]


# ------------------------------------------------------------------------------ on Ray, for real
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    """lenet5 on a local Ray instance (2 CPUs), 2 replicas; Ray is shut down and its processes gone after."""
    import ray
    from ray import serve

    from edgenn.serve import app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 10})
        options = ServeOptions(replicas=2, max_batch_size=16, batch_wait_ms=20, port=port)
        serve.run(app(LENET, options), name="edgenn", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
    deadline = time.time() + 30
    while time.time() < deadline and _ray_processes():
        time.sleep(0.5)
    assert not _ray_processes(), "Ray left processes behind"


def _ray_processes() -> list[str]:
    return ray_processes()


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_concurrent_requests_match_the_runtime_and_are_batched(service):
    model = Model(LENET)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(96)]

    def one(x: np.ndarray):
        return _post(f"{service}/predict", json.dumps({"input": x.tolist()}).encode())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, inputs))
    assert all(status == 200 for status, _, _ in answers)
    for x, (_, _, body) in zip(inputs, answers):
        # a batch of 16 rounds differently from a batch of 1 (other kernel blocking): export's parity tolerance
        np.testing.assert_allclose(
            np.array(body["output"], np.float32), model.predict(x)["output"], atol=1e-4, rtol=1e-3
        )
    batches = [int(headers["x-edgenn-batch"]) for _, headers, _ in answers]
    replicas = {headers["x-edgenn-replica"] for _, headers, _ in answers}
    assert max(batches) > 1, "no request was batched with another"
    assert len(replicas) == 2


def test_a_chunked_upload_is_read(service):
    port = int(service.rsplit(":", 1)[1])
    body = json.dumps({"input": np.zeros((1, 1, 32, 32)).tolist()}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
    connection.request("POST", "/predict", chunks, {"content-type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["output"][0]) == 10
    connection.close()


def test_the_service_answers_errors_as_json_with_their_status(service):
    status, _, body = _post(f"{service}/predict", b"{nope", "application/json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, _, body = _post(f"{service}/classify", _png(np.zeros((12000, 12000))), "image/png")
    assert status == 413 and "12000x12000" in body["error"]
    with urllib.request.urlopen(f"{service}/healthz", timeout=30) as response:
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"


def test_a_slow_client_is_cut_off_and_holds_no_replica(service):
    port = int(service.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n{")
    started = time.time()
    x = json.dumps({"input": np.zeros((1, 1, 32, 32)).tolist()}).encode()
    assert _post(f"{service}/predict", x)[0] == 200  # answered while the slow upload dawdles
    slow.settimeout(1.0)
    answer = b""
    while time.time() - started < 30 and not answer:
        try:
            slow.sendall(b" ")  # one byte a second
            answer = slow.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
    slow.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]  # Ray's proxy, at request_timeout_s (10 here)
    assert time.time() - started < 20


def _replica_names() -> set[str]:
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    return {a["name"] for a in named if a["namespace"] == "serve" and "EdgennModel" in a["name"]}


def test_a_killed_replica_is_replaced_without_a_restart(service):
    import ray

    before = _replica_names()
    assert len(before) == 2
    x = json.dumps({"input": np.zeros((1, 1, 32, 32)).tolist()}).encode()
    victim = sorted(before)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    statuses, now = [], before
    deadline = time.time() + 90
    while time.time() < deadline:
        statuses.append(_post(f"{service}/predict", x)[0])
        now = _replica_names()
        if len(now) == 2 and victim not in now and statuses[-1] == 200:
            break
        time.sleep(0.2)
    assert victim not in now and len(now) == 2, (sorted(now), statuses[-10:])  # Serve replaced it, no restart
    assert statuses[-1] == 200
    assert statuses.count(200) >= len(statuses) - 3  # the other replica kept answering meanwhile


def test_runtime_import_needs_no_ray():
    code = "import sys; sys.modules['ray'] = None; import edgenn.runtime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_json_depth_limit_ignores_brackets_inside_strings():
    from edgenn.serve import HTTPError, parse_json

    text = b'{"note": "[[[[ \\" ]]]] [[[", "input": [[1, 2]]}'
    assert parse_json(text, 3)["input"] == [[1, 2]]
    with pytest.raises(HTTPError, match="deeper than 2"):
        parse_json(text, 2)


def test_one_bad_request_does_not_fail_the_others_of_its_batch(monkeypatch):
    from edgenn.errors import InputError

    replica = EdgennReplica(str(LENET), OPTIONS.to_dict())
    real = replica.model.predict

    def refusing(feeds):  # the model refusing one request's values (as onnxruntime can, past the checks)
        if np.any(feeds["input"] == 99):
            raise InputError("onnxruntime could not run the model on these inputs: a value it refuses")
        return real(feeds)

    monkeypatch.setattr(replica.model, "predict", refusing)
    good, bad = np.zeros((1, 1, 32, 32), np.float32), np.full((1, 1, 32, 32), 99, np.float32)
    ran = replica._predict_group([{"input": good}, {"input": bad}, {"input": good}])
    assert ran[0].error is None and ran[2].error is None and "a value it refuses" in str(ran[1].error)
    np.testing.assert_allclose(ran[0].outputs["output"], real({"input": good})["output"], atol=1e-5)
    body = json.dumps({"input": bad.tolist()}).encode()
    status, answer = _call(replica, "POST", "/predict", body, "application/json")
    assert status == 400 and "a value it refuses" in answer["error"]


def test_npy_bodies_are_checked_before_they_are_read(replica):
    npz = io.BytesIO()
    np.savez(npz, input=np.zeros((1, 1, 32, 32), np.float32))
    status, answer = _call(replica, "POST", "/predict", npz.getvalue(), "application/x-npy")
    assert status == 400 and "not a .npy array" in answer["error"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**6)})
    bomb = header.getvalue() + b"\x00" * 16  # a header promising 40 TB, and 16 bytes
    assert bomb.startswith(b"\x93NUMPY")
    status, answer = _call(replica, "POST", "/predict", bomb, "application/x-npy")
    assert status == 400 and "declares" in answer["error"]
    status, answer = _call(replica, "POST", "/classify", _png(np.zeros((8, 8))), "image/png", "top_k=%C2%B2")
    assert status == 400 and "top_k must be" in answer["error"]


def test_an_upload_that_goes_quiet_is_cut_off(tmp_path):
    quiet = EdgennReplica(str(LENET), {**OPTIONS.to_dict(), "idle_timeout_s": 0.5})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(60)  # the client goes quiet

    started = time.time()
    response = asyncio.run(quiet(Request(scope, receive)))
    assert response.status_code == 408 and time.time() - started < 5
    assert "sent nothing for 0.5 s" in json.loads(response.body)["error"]


def test_a_deployment_answers_say_which_route_served_them():
    deploy = ROOT / "models" / "lenet5" / "deploy"
    replica = EdgennReplica(str(deploy), OPTIONS.to_dict())
    x = np.zeros((1, 1, 32, 32), np.float32)
    one = replica._predict_group([{"input": x}])[0]
    many = replica._predict_group([{"input": x}] * 12)[0]
    assert one.route == replica.model.route_for(1).candidate.id
    assert many.route == replica.model.route_for(12).candidate.id and many.rows == 12
    assert one.headers()["x-edgenn-route"] == one.route
