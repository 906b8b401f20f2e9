"""`edgenn serve`: a model or a tuned deployment on Ray Serve, with dynamic batching and replicas.

    application = app("models/lenet5/model.onnx", ServeOptions(replicas=2, max_batch_size=16))
    serve.run(application)                       # or `edgenn serve MODEL`, or a config for `serve deploy`

Each replica holds one `edgenn.runtime.Model` (threads set explicitly: onnxruntime ignores the
OMP_NUM_THREADS Ray sets) and runs it in a worker thread, so the replica's event loop keeps taking
requests while a batch computes. Requests are grouped by `@serve.batch` and each group of equal
shapes runs as one batch. The HTTP API (README):

    POST /predict    JSON {input name: nested list} (a batch, or one sample without the batch dim), or a raw
                     .npy body for a one-input model; answers {output name: nested list}
    POST /classify   a picture (raw body or multipart form), ?top_k=; answers the top classes
    GET  /healthz    200 {"status": "ok"} once the replica's model is loaded
    GET  /model      the specs, labels, preprocessing and deployment profile

Errors are JSON {"error": "one line"} with the runtime's own messages: 400 bad input, 404, 405, 413
over the body limit, 415 a content type the endpoint does not read. Pictures are refused by pixel
count before they are decoded.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import json
import logging
import os
import re
import signal
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from edgenn.errors import EdgennError, InputError
from edgenn.uploads import DEFAULT_MAX_PIXELS

logger = logging.getLogger("edgenn.serve")

MiB = 1024 * 1024
DEPLOYMENT_NAME = "EdgennModel"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: replicas (or autoscaling bounds), batching, threads, where to listen, request limits."""

    replicas: int = 1
    min_replicas: int | None = None  # autoscaling between these (both given) instead of a fixed count
    max_replicas: int | None = None
    max_batch_size: int = 16  # requests per @serve.batch call (1: no batching)
    batch_wait_ms: float = 5.0  # how long a request may wait for others to join its batch
    threads: int = 1  # onnxruntime intra-op threads per replica (and the CPUs Ray reserves for it)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 8 * MiB
    max_pixels: int = DEFAULT_MAX_PIXELS  # a picture larger than this is refused before it is decoded
    max_top_k: int = 100
    max_json_depth: int = 32  # deeper JSON is refused before it is parsed
    request_timeout_s: float = 30.0  # Ray's proxy cuts off a request (a slow client's upload included) past this
    idle_timeout_s: float = 5.0  # a replica cuts off an upload that sends nothing for this long
    name: str = "edgenn"

    def checked(self) -> ServeOptions:
        if self.replicas < 1 or self.threads < 1 or self.max_batch_size < 1:
            raise InputError("--replicas, --threads and --max-batch-size must be 1 or more")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise InputError("autoscaling needs both --min-replicas and --max-replicas")
        if self.min_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:  # type: ignore[operator]
            raise InputError("--min-replicas must be between 0 and --max-replicas")
        if self.batch_wait_ms < 0 or self.max_body_bytes < 1 or self.max_pixels < 1:
            raise InputError("--batch-wait-ms must be 0 or more, the body and pixel limits 1 or more")
        if not 0 < self.port < 65536:
            raise InputError(f"--port {self.port}: give a port between 1 and 65535")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve's options for the deployment (also what --print-config writes)."""
        options: dict[str, Any] = {
            # a @serve.batch batch never holds more requests than a replica takes at once
            "max_ongoing_requests": max(2 * self.max_batch_size, 8),
            "ray_actor_options": {"num_cpus": self.threads},
        }
        if self.min_replicas is not None:
            options["autoscaling_config"] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas}
        else:
            options["num_replicas"] = self.replicas
        return options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HTTPError(Exception):
    """A request the API refuses: its status code and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------- the application
def check_model(path: str | os.PathLike[str], options: ServeOptions) -> dict[str, Any]:
    """Open the model here, before Ray starts: a missing or invalid one is one line, not a failed replica.
    Returns what the replicas will serve (the /model description)."""
    from edgenn.runtime import Model

    model = Model(path, threads=options.threads)
    return describe(model)


def app(path: str | os.PathLike[str], options: ServeOptions = ServeOptions(), check: bool = True) -> Any:
    """The Ray Serve application serving `path` (a .onnx file or a tuned deployment folder); `check` opens
    the model here first, so that a bad one fails in one line rather than as a replica that never starts."""
    options = options.checked()
    path = str(Path(path).resolve())
    if check:
        check_model(path, options)
    deployment = serve.deployment(EdgennReplica, name=DEPLOYMENT_NAME).options(**options.deployment_options())
    return deployment.bind(path, options.to_dict())


def app_builder(args: dict[str, Any]) -> Any:
    """What a Ray Serve config's `import_path: edgenn.serve:app_builder` calls with its `args`."""
    args = dict(args)
    model = args.pop("model")
    return app(model, ServeOptions(**args))


def serve_config(path: str | os.PathLike[str], options: ServeOptions) -> str:
    """A Ray Serve config file (YAML) for `serve deploy` on a cluster: the same application and options."""
    import yaml

    options = options.checked()
    deployment = {"name": DEPLOYMENT_NAME, **options.deployment_options()}
    args = {k: v for k, v in options.to_dict().items() if v != getattr(ServeOptions(), k)}
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": options.host, "port": options.port, "request_timeout_s": options.request_timeout_s},
        "applications": [
            {
                "name": options.name,
                "route_prefix": "/",
                "import_path": "edgenn.serve:app_builder",
                "args": {"model": str(Path(path).resolve()), **args},
                "deployments": [deployment],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def run(path: str | os.PathLike[str], options: ServeOptions, address: str | None = None) -> None:
    """Serve `path` until interrupted: on a local Ray instance started here (shut down after), or on the
    cluster at `address` (where only this application is deleted after: the cluster's others stay)."""
    import ray

    options = options.checked()
    check_model(path, options)  # fails here, before Ray starts
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    # SIGTERM (systemd, docker stop, kill) stops the service as Ctrl-C does, Ray shut down cleanly; set after
    # ray.init, whose native handler would otherwise dump a stack and leave Ray's agents running
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(
            http_options={"host": options.host, "port": options.port, "request_timeout_s": options.request_timeout_s}
        )
        serve.run(app(path, options, check=False), name=options.name, route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        if address is None and started_here:
            serve.shutdown()
            ray.shutdown()
        else:
            try:
                serve.delete(options.name)
            except Exception:  # the cluster went away first: nothing of ours is left to delete
                logger.info("could not delete application %s", options.name)
            if started_here:
                ray.shutdown()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------------------- replica
class EdgennReplica:
    """One replica: one Model, the HTTP API, and @serve.batch grouping of the requests it takes."""

    def __init__(self, path: str, options: dict[str, Any]) -> None:
        from edgenn.runtime import Model
        from edgenn.runtime.files import looks_like_scores

        self.options = ServeOptions(**options)
        self.model = Model(path, threads=self.options.threads)
        self.classifier = looks_like_scores(self.model) and len(self.model.inputs) == 1
        self.description = describe(self.model)
        self.batch_sizes: Counter[int] = Counter()  # requests per batch this replica ran
        self._run_batch.set_max_batch_size(self.options.max_batch_size)
        self._run_batch.set_batch_wait_timeout_s(self.options.batch_wait_ms / 1000)
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
            self._batched = True
        except Exception:  # outside a replica (the class called directly): no @serve.batch queue to join
            self.replica, self._batched = f"pid-{os.getpid()}", False

    async def __call__(self, request: Any) -> Any:
        from starlette.requests import ClientDisconnect
        from starlette.responses import JSONResponse

        try:
            status, body, headers = await self._route(request)
        except HTTPError as exc:
            status, body, headers = exc.status, {"error": exc.message}, {}
        except ClientDisconnect:  # the client hung up: nothing to answer, nothing to log as a failure
            logger.info("client disconnected from %s", request.url.path)
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        except Exception as exc:  # a bug or a failure of the model: logged with its traceback, one line out
            logger.exception("request to %s failed", request.url.path)
            status, body, headers = 500, {"error": f"internal error ({type(exc).__name__}); see the server log"}, {}
        return JSONResponse(body, status_code=status, headers={"x-edgenn-replica": self.replica, **headers})

    async def _route(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        path, method = request.url.path.rstrip("/") or "/", request.method
        routes = {"/predict": "POST", "/classify": "POST", "/healthz": "GET", "/model": "GET"}
        if path not in routes:
            raise HTTPError(404, f"no endpoint {path}: use {', '.join(f'{m} {p}' for p, m in routes.items())}")
        if method != routes[path]:
            raise HTTPError(405, f"{path} takes {routes[path]}, not {method}")
        if path == "/healthz":
            return 200, {"status": "ok", "replica": self.replica}, {}
        if path == "/model":
            return 200, {**self.description, "requests_per_batch": dict(self.batch_sizes)}, {}
        body = await read_body(request, self.options.max_body_bytes, self.options.idle_timeout_s)
        content_type = request.headers.get("content-type", "")
        if path == "/predict":
            # parsing a large body takes CPU: in a worker thread, so the event loop keeps taking requests
            feeds = await asyncio.to_thread(parse_predict, self.model, body, content_type, self.options)
            ran = await self._infer(feeds)
            answer = await asyncio.to_thread(lambda: {n: np.asarray(v).tolist() for n, v in ran.outputs.items()})
            return 200, answer, ran.headers()
        if not self.classifier:
            raise HTTPError(
                400,
                f"{self.description['model']} is not a one-input classifier; /classify cannot serve it: use /predict",
            )
        top_k = parse_top_k(request.query_params.get("top_k"), self.options.max_top_k)
        feeds = await asyncio.to_thread(self._picture_feeds, body, content_type)
        ran = await self._infer(feeds)
        scores = ran.outputs[self.model.outputs[0].name]
        classes = self.model.top_classes(np.asarray(scores), top_k)[0]
        return 200, {"predictions": [c.to_dict() for c in classes]}, ran.headers()

    def _picture_feeds(self, body: bytes, content_type: str) -> dict[str, np.ndarray]:
        """The picture decoded and turned into the model's input (CPU work: called in a worker thread)."""
        picture = parse_picture(body, content_type, self.options.max_pixels)
        try:
            return {self.model.inputs[0].name: self.model.picture_input(picture)}
        except InputError as exc:
            raise HTTPError(400, str(exc)) from None

    async def _infer(self, feeds: dict[str, np.ndarray]) -> _Ran:
        if self._batched:
            ran = await self._run_batch(feeds)
        else:
            ran = (await asyncio.to_thread(self._predict_group, [feeds]))[0]
        if ran.error is not None:
            raise HTTPError(400, str(ran.error))
        return ran

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)  # each replica sets its own in __init__
    async def _run_batch(self, requests: list[dict[str, np.ndarray]]) -> list[_Ran]:
        """The requests Ray gathered: each group of equal shapes runs as one batch, in a worker thread."""
        self.batch_sizes[len(requests)] += 1
        results: list[_Ran | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, feeds in enumerate(requests):
            key = tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items())
            groups.setdefault(key, []).append(index)
        for members in groups.values():
            ran = await asyncio.to_thread(self._predict_group, [requests[i] for i in members])
            for i, one in zip(members, ran):
                results[i] = one
        return [r for r in results if r is not None]

    def _predict_group(self, group: list[dict[str, np.ndarray]]) -> list[_Ran]:
        """One batch of requests of equal shapes: one call where its outputs split back by rows, else (a
        request the model refuses, an output without the batch dim) one call per request, so that a
        request's error is its own."""
        sizes = [len(next(iter(feeds.values()))) for feeds in group]
        if len(group) > 1:
            joined = {name: np.concatenate([feeds[name] for feeds in group]) for name in group[0]}
            try:
                outputs = self.model.predict(joined)
            except InputError:
                outputs = None
            total = sum(sizes)
            if outputs is not None and all(np.ndim(v) and len(v) == total for v in outputs.values()):
                route = self._route_name(total)
                bounds = np.cumsum([0, *sizes])
                return [
                    _Ran({n: v[bounds[i] : bounds[i + 1]] for n, v in outputs.items()}, total, route)
                    for i in range(len(group))
                ]
        ran = []
        for feeds, size in zip(group, sizes):
            try:
                ran.append(_Ran(self.model.predict(feeds), size, self._route_name(size)))
            except InputError as exc:
                ran.append(_Ran({}, size, "", exc))
        return ran

    def _route_name(self, rows: int) -> str:
        """The candidate of a tuned deployment that ran `rows` rows ("" for a plain file)."""
        route = self.model.route_for(rows)
        return route.candidate.id if route is not None else ""


@dataclass(frozen=True)
class _Ran:
    """What one request got from a batch: its outputs, the rows the model ran them with, and the deployment
    route that served them; or the error the model gave its inputs alone."""

    outputs: dict[str, np.ndarray]
    rows: int
    route: str
    error: Exception | None = None

    def headers(self) -> dict[str, str]:
        headers = {"x-edgenn-batch": str(self.rows)}
        if self.route:
            headers["x-edgenn-route"] = self.route
        return headers


# -------------------------------------------------------------------------------------- requests
async def read_body(request: Any, limit: int, idle_s: float = 5.0) -> bytes:
    """The request's body (chunked uploads included), refused with 413 as soon as it passes `limit`, and with
    408 where the client sends nothing for `idle_s` (a slow upload would hold one of the replica's slots)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"the body is {int(declared)} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=idle_s)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HTTPError(408, f"the client sent nothing for {idle_s:g} s; send the whole body") from None
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the body passes {limit} bytes, the most this server takes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_predict(model: Any, body: bytes, content_type: str, options: ServeOptions) -> dict[str, np.ndarray]:
    """/predict's body as the model's feeds: JSON with one array per input name, or a raw .npy (one input)."""
    kind = content_type.split(";")[0].strip().lower()
    names = [s.name for s in model.inputs]
    if kind in ("application/x-npy", "application/octet-stream", "application/npy"):
        if len(names) != 1:
            raise HTTPError(415, f"the model has {len(names)} inputs ({', '.join(names)}); send JSON with one per name")
        return _batched(model, {names[0]: read_npy(body)})
    if kind != "application/json":
        raise HTTPError(
            415,
            f"/predict reads application/json (one array per input) or application/x-npy, not {kind or 'none'} "
            "(curl: -H 'content-type: application/json')",
        )
    data = parse_json(body, options.max_json_depth)
    if not isinstance(data, dict):
        raise HTTPError(400, f"send a JSON object with one array per input: {{{', '.join(map(json.dumps, names))}}}")
    missing, extra = [n for n in names if n not in data], [k for k in data if k not in names]
    if missing or extra:
        raise HTTPError(400, f"the model's inputs are {names}; the request has {sorted(data)}")
    feeds = {}
    for spec in model.inputs:
        try:
            feeds[spec.name] = np.asarray(data[spec.name], dtype=spec.dtype)
        except (ValueError, TypeError) as exc:
            raise HTTPError(
                400, f"input {spec.name!r} is not a rectangular {spec.dtype} array ({first(exc)})"
            ) from None
    return _batched(model, feeds)


def _batched(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds with their batch dim: one sample given without it gets one; wrong shapes are the runtime's to name."""
    from edgenn.runtime.inputs import InputCheck, check_feeds

    out = {}
    for spec in model.inputs:
        array = feeds[spec.name]
        if array.ndim == len(spec.shape) - 1 and spec.shape and (isinstance(spec.shape[0], str) or spec.shape[0] == 1):
            array = array[None]  # one sample sent without its batch dim
        out[spec.name] = array
    try:
        # the runtime's own checks (names, rank, dims, dtype), so that a bad request fails alone, not its batch
        checks = tuple(InputCheck.of(spec) for spec in model.inputs)
        return check_feeds(out, checks, tuple(s.name for s in model.inputs), model.check_finite)
    except InputError as exc:
        raise HTTPError(400, str(exc)) from None


_JSON_STRINGS = re.compile(rb'"(?:\\.|[^"\\])*"')  # a JSON string, escapes included


def read_npy(body: bytes) -> np.ndarray:
    """A raw .npy body, its header checked against the bytes that follow (a 100-byte body can declare a
    terabyte) before any memory is taken; a .npz or a pickle is refused."""
    stream = io.BytesIO(body)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        if version not in readers:
            raise ValueError(f".npy format version {version[0]}.{version[1]} (numpy.save writes 1.0)")
        shape, _fortran, dtype = readers[version](stream)
    except (ValueError, OSError, EOFError) as exc:
        raise HTTPError(
            400, f"the body is not a .npy array ({first(exc)}); send one array written by numpy.save"
        ) from None
    if dtype.hasobject:
        raise HTTPError(400, "the .npy holds Python objects, which this server does not unpickle; send numbers")
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed != len(body) - stream.tell():
        raise HTTPError(
            400,
            f"the .npy header declares {shape} {dtype} ({needed} bytes); the body holds {len(body) - stream.tell()}",
        )
    return np.load(io.BytesIO(body), allow_pickle=False)


def parse_json(body: bytes, max_depth: int) -> Any:
    """JSON, refused before parsing where it nests deeper than `max_depth` (a stack of [[[[... costs the
    parser its recursion). Brackets inside strings do not count; the scan is vectorised, not a Python loop."""
    outside = np.frombuffer(_JSON_STRINGS.sub(b'""', body), dtype=np.uint8)
    steps = np.isin(outside, (0x5B, 0x7B)).astype(np.int32) - np.isin(outside, (0x5D, 0x7D)).astype(np.int32)
    if steps.size and int(np.cumsum(steps).max()) > max_depth:
        raise HTTPError(400, f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPError(400, f"the body is not valid JSON ({first(exc)})") from None


def parse_top_k(text: str | None, limit: int) -> int:
    if text is None:
        return 5
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= limit:
        raise HTTPError(400, f"top_k must be a whole number from 1 to {limit}, got {text!r}")
    return int(text)


def parse_picture(body: bytes, content_type: str, max_pixels: int) -> Any:
    """The picture in a raw body or a multipart form's first file, opened, sized and only then decoded."""
    from edgenn.uploads import PictureTooLarge, open_picture

    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        body = _form_file(body, content_type)
    elif kind in ("application/json", "text/plain"):
        raise HTTPError(415, f"/classify reads a picture (a raw body or a multipart form), not {kind}")
    # any other type (image/png, application/octet-stream, curl's default x-www-form-urlencoded) is the picture
    try:
        return open_picture(body, max_pixels)
    except PictureTooLarge as exc:
        raise HTTPError(413, str(exc)) from None
    except InputError as exc:
        raise HTTPError(400, str(exc)) from None


def _form_file(body: bytes, content_type: str) -> bytes:
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise HTTPError(400, "the multipart form does not parse (check its boundary)")
    for part in message.iter_parts():
        if part.get_filename() or part.get_param("name", header="content-disposition") in ("file", "picture", "image"):
            return part.get_payload(decode=True) or b""
    raise HTTPError(400, "the form holds no file: send the picture as a file field")


def describe(model: Any) -> dict[str, Any]:
    """GET /model: what is served."""
    description: dict[str, Any] = {
        "model": Path(model.path).name,
        "inputs": [s.to_dict() for s in model.inputs],
        "outputs": [s.to_dict() for s in model.outputs],
        "labels": list(model.labels) if model.metadata.get("edgenn.labels") else None,
        "preprocessing": None if model.preprocessing is None else model.preprocessing.to_dict(),
        "session": model.session_info.summary,
    }
    if model.deployment is not None:
        description["deployment"] = {
            "routes": [
                {"batch_min": r.batch_min, "batch_max": r.batch_max, "candidate": r.candidate.id} for r in model.routes
            ],
            "notes": list(model.deployment_notes),
        }
    return description


def first(exc: BaseException) -> str:
    from edgenn.errors import first_line

    return first_line(exc, 200)


__all__ = ["EdgennError", "ServeOptions", "app", "app_builder", "run", "serve_config"]
