"""An example app: edgenn.runtime embedded in a small HTTP service (standard library only).

    python tools/serve.py model.onnx --port 8000
    curl --data-binary @digit.png http://127.0.0.1:8000/classify?top_k=3
    curl -H 'Content-Type: application/json' -d '[[...]]' http://127.0.0.1:8000/classify

POST /classify   body: a picture (PNG, JPEG, ...), or JSON: a nested list (or {"input": list}) that
                 is a batch of model inputs, one input without the batch dimension, or a 2-D picture.
                 Answers {"read_as": ..., "predictions": [[{"label", "index", "score"}, ...], ...]}.
GET  /health     answers the model's description (inputs, outputs, labels, providers).

One Model serves every request thread: its onnxruntime session is created once, at start.
Bad requests get a 4xx with {"error": "one line"}; nothing a client sends produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgenn.errors import EdgennError, InputError
from edgenn.runtime import Model, classify_array

MAX_BODY_BYTES = 4 * 1024 * 1024  # pictures of digits are a few kB; refuse anything far larger
MAX_TOP_K = 100
READ_TIMEOUT_S = 10.0  # a client that stops sending mid-request frees its thread after this


def classify_body(model: Model, body: bytes, content_type: str, top_k: int) -> dict[str, Any]:
    """The JSON answer for one request body: a picture, or a JSON array of inputs."""
    if content_type.split(";")[0].strip().lower() == "application/json" or body[:1] in (b"[", b"{"):
        array = _json_array(body)
        read_as, predictions = classify_array(model, array, top_k, name="request body")
    else:
        read_as, predictions = "picture", [model.classify_picture(body, top_k)]
    return {"read_as": read_as, "predictions": [[c.to_dict() for c in classes] for classes in predictions]}


def _json_array(body: bytes) -> np.ndarray:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if "input" not in data:
            raise InputError('a JSON object body needs an "input" key holding the array')
        data = data["input"]
    try:
        array = np.asarray(data)
    except ValueError:
        raise InputError("the JSON array is ragged: every row must have the same length") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise InputError("the JSON body must be a (nested) list of numbers")
    return array


def make_handler(model: Model, default_top_k: int = 3, quiet: bool = True) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_S
        server_version = "edgenn-serve/0.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if urlsplit(self.path).path == "/health":
                self._answer(HTTPStatus.OK, {"status": "ok", "model": model.to_dict()})
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "unknown path: GET /health or POST /classify"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path != "/classify":
                self._answer(HTTPStatus.NOT_FOUND, {"error": "unknown path: POST /classify"})
                return
            try:
                top_k = _top_k(parse_qs(url.query), default_top_k)
                body = self._body()
                result = classify_body(model, body, self.headers.get("Content-Type", ""), top_k)
            except _TooLarge as exc:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(exc)})
            except EdgennError as exc:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # a bug: the client gets one line, the operator the log
                self.log_error("internal error: %r", exc)
                self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            else:
                self._answer(HTTPStatus.OK, result)

        def _body(self) -> bytes:
            length_text = self.headers.get("Content-Length")
            if length_text is None:
                raise InputError("send the body with a Content-Length header")
            try:
                length = int(length_text)
            except ValueError:
                raise InputError(f"bad Content-Length {length_text!r}") from None
            if length > MAX_BODY_BYTES:
                raise _TooLarge(f"the body has {length} bytes; the limit is {MAX_BODY_BYTES}")
            if length <= 0:
                raise InputError("the body is empty: send a picture or a JSON array")
            return self.rfile.read(length)

        def _answer(self, status: HTTPStatus, data: dict[str, Any]) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            if not quiet:
                super().log_message(format, *args)

    return Handler


class _TooLarge(Exception):
    pass


def _top_k(query: dict[str, list[str]], default: int) -> int:
    text = query.get("top_k", [str(default)])[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP_K:
        raise InputError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {text!r}")
    return int(text)


def make_server(
    model: Model, host: str = "127.0.0.1", port: int = 0, top_k: int = 3, quiet: bool = True
) -> ThreadingHTTPServer:
    """A server bound to (host, port) (port 0: any free one; read it from .server_address)."""
    server = ThreadingHTTPServer((host, port), make_handler(model, top_k, quiet))
    server.daemon_threads = True  # request threads never keep the process alive at shutdown
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Start `server` in a daemon thread; stop it with server.shutdown() and server.server_close()."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify pictures and arrays over HTTP with an edgenn model.")
    parser.add_argument("model", help="an .onnx model (exported by edgenn for labels and preprocessing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one; default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=3, help="classes per answer unless ?top_k= says otherwise")
    parser.add_argument("--provider", default="auto", help="auto, cpu, cuda, tensorrt (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads per request")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        model = Model(args.model, providers=args.provider, threads=args.threads, check_finite=True)
        server = make_server(model, args.host, args.port, args.top_k, quiet=not args.verbose)
    except (EdgennError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"serving {args.model} on http://{host}:{port} (POST /classify, GET /health)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
