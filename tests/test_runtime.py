"""edgenn.runtime on real exported models: specs, metadata, checks, errors, threads, pictures, layering."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgenn.errors import EdgennError, InputError, ModelFileError, ProviderError
from edgenn.runtime import ClassScore, Model, providers, to_probabilities
from edgenn.runtime.inputs import all_finite
from edgenn.specs import Preprocessing, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
DIGITS = tuple(str(d) for d in range(10))


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def lenet_path(exported):
    return exported("lenet5")


@pytest.fixture(scope="session")
def lenet(lenet_path):
    return Model(lenet_path, providers="cpu", threads=1)


@pytest.fixture(scope="session")
def lenet_softmax_path(trained, tmp_path_factory):
    """The same trained LeNet-5, exported with a softmax at the end (outputs are probabilities)."""
    from edgenn.export import export_source

    target = tmp_path_factory.mktemp("onnx-lenet5-softmax") / "lenet5_softmax.onnx"
    export_source("lenet5", target, weights=trained("lenet5"), softmax_output=True).raise_for_failure()
    return target


@pytest.fixture(scope="session")
def test_inputs(digits, lenet):
    return digits.test.inputs(lenet.preprocessing), digits.test.labels


def plain_model(
    path: Path,
    *,
    input_type=TensorProto.FLOAT,
    dims=("N", 3),
    classes: int = 4,
    op_type: str = "",
    opset: int = 17,
) -> Path:
    """A model without edgenn metadata: y = x @ W + b (float), or y = Cast(x) @ W + b (int input)."""
    w = np.arange(3 * classes, dtype=np.float32).reshape(3, classes) / 10.0
    b = np.linspace(-1, 1, classes, dtype=np.float32)
    nodes, source = [], "x"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        source = "xf"
    nodes += [helper.make_node("MatMul", [source, "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    if op_type:
        nodes.append(helper.make_node(op_type, ["y"], ["z"]))
    graph = helper.make_graph(
        nodes,
        "plain",
        [helper.make_tensor_value_info("x", input_type, list(dims))],
        [helper.make_tensor_value_info("z" if op_type else "y", TensorProto.FLOAT, [dims[0], classes])],
        initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def two_input_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def digit_picture(image: np.ndarray, scale: int = 8, dark_ink: bool = False) -> np.ndarray:
    """An (8, 8) digit in [0, 1] as a (64, 64) uint8 picture, the way a person would save it."""
    big = np.kron(image, np.ones((scale, scale), dtype=np.float32))
    if dark_ink:
        big = 1.0 - big
    return np.round(big * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------- specs and metadata
def test_exported_model_specs_labels_and_preprocessing(lenet):
    assert lenet.inputs == (TensorSpec("input", ("batch", 1, 32, 32), "float32"),)
    assert lenet.outputs == (TensorSpec("output", ("batch", 10), "float32"),)
    assert lenet.labels == DIGITS
    assert lenet.preprocessing == Preprocessing("image", size=(32, 32))
    assert lenet.providers == ("CPUExecutionProvider",)
    assert lenet.to_dict()["inputs"] == [{"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]


def test_predict_is_the_raw_session_and_classifies_digits(lenet, test_inputs):
    x, labels = test_inputs
    outputs = lenet.predict(x)
    assert list(outputs) == ["output"]
    raw = lenet.session.run(None, {"input": x})[0]
    np.testing.assert_array_equal(outputs["output"], raw)
    assert (outputs["output"].argmax(axis=1) == labels).mean() >= 0.95


def test_predict_takes_a_dict_lists_and_float64(lenet, test_inputs):
    x = test_inputs[0][:5]
    expected = lenet.predict(x)["output"]
    np.testing.assert_array_equal(lenet.predict({"input": x})["output"], expected)
    np.testing.assert_array_equal(lenet.predict(x.astype(np.float64))["output"], expected)
    np.testing.assert_array_equal(lenet.predict(x.tolist())["output"], expected)
    np.testing.assert_array_equal(lenet.predict(np.asfortranarray(x))["output"], expected)


def test_predict_one_adds_and_removes_the_batch_dimension(lenet, test_inputs):
    x = test_inputs[0]
    one = lenet.predict_one(x[3])
    assert one["output"].shape == (10,)
    np.testing.assert_allclose(one["output"], lenet.predict(x[3:4])["output"][0], rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="already has the batch dimension: use predict"):
        lenet.predict_one(x[:1])


def test_model_loads_from_bytes(lenet_path, test_inputs):
    model = Model(Path(lenet_path).read_bytes(), providers="cpu")
    assert model.path == "<bytes>" and model.labels == DIGITS
    assert model.predict(test_inputs[0][:2])["output"].shape == (2, 10)


# ---------------------------------------------------------------------------- classification
def test_classify_scores_are_softmax_probabilities_of_the_logits(lenet, test_inputs):
    x, labels = test_inputs
    results = lenet.classify(x[:20], top_k=3)
    logits = lenet.predict(x[:20])["output"].astype(np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert len(results) == 20 and all(len(r) == 3 for r in results)
    for row, top in zip(expected, results, strict=True):
        assert all(isinstance(c, ClassScore) for c in top)
        assert [c.index for c in top] == list(np.argsort(-row, kind="stable")[:3])
        assert [c.label for c in top] == [str(c.index) for c in top]
        np.testing.assert_allclose([c.score for c in top], row[[c.index for c in top]], rtol=1e-9)
        assert top[0].score >= top[1].score >= top[2].score
    assert np.mean([r[0].index for r in results] == labels[:20]) >= 0.9


def test_softmax_output_is_not_softmaxed_twice(lenet, lenet_softmax_path, test_inputs):
    x = test_inputs[0][:10]
    probabilistic = Model(lenet_softmax_path, providers="cpu")
    probabilities = probabilistic.predict(x)["output"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    both = zip(probabilities, probabilistic.classify(x, 3), lenet.classify(x, 3), strict=True)
    for row, top, from_logits in both:
        np.testing.assert_allclose([c.score for c in top], row[[c.index for c in top]], rtol=1e-6)
        np.testing.assert_allclose([c.score for c in top], [c.score for c in from_logits], atol=1e-5)


def test_to_probabilities_tells_logits_from_distributions():
    distribution = np.array([[0.1, 0.7, 0.2], [0.0, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(to_probabilities(distribution), distribution, atol=1e-7)
    logits = np.array([[2.0, 0.5, -1.0]])
    np.testing.assert_allclose(to_probabilities(logits).sum(), 1.0)
    assert to_probabilities(logits)[0, 0] == pytest.approx(np.exp(2) / np.exp([2, 0.5, -1]).sum())


def test_classify_one_and_top_k_bounds(lenet, test_inputs):
    x = test_inputs[0]
    assert lenet.classify_one(x[0], top_k=2) == lenet.classify(x[:1], top_k=2)[0]
    assert len(lenet.classify(x[:1], top_k=50)[0]) == 10
    with pytest.raises(InputError, match="top_k must be a positive"):
        lenet.classify(x[:1], top_k=0)


# ---------------------------------------------------------------- a model without edgenn metadata
def test_model_without_metadata_runs_with_plain_labels(tmp_path):
    model = Model(plain_model(tmp_path / "plain.onnx"))
    assert model.metadata == {}
    assert model.inputs == (TensorSpec("x", ("N", 3), "float32"),)
    assert model.labels == ("0", "1", "2", "3")
    assert model.preprocessing is None
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]], dtype=np.float32)
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10.0
    logits = x @ w + np.linspace(-1, 1, 4, dtype=np.float32)
    np.testing.assert_allclose(model.predict(x)["y"], logits, rtol=1e-6)
    top = model.classify(x, top_k=1)
    assert [t[0].label for t in top] == [str(i) for i in logits.argmax(axis=1)]
    with pytest.raises(InputError, match="no edgenn preprocessing metadata"):
        model.classify_picture(np.zeros((8, 8), dtype=np.uint8))


def test_classify_refuses_a_one_output_regression_and_an_empty_batch(tmp_path):
    model = Model(plain_model(tmp_path / "reg.onnx", classes=1))
    x = np.ones((2, 3), dtype=np.float32)
    assert model.predict(x)["y"].shape == (2, 1)  # predict runs it ...
    with pytest.raises(InputError, match="2 classes or more"):
        model.classify(x)  # ... classify does not pretend it is a classifier
    with pytest.raises(InputError, match="the batch is empty"):
        Model(plain_model(tmp_path / "cls.onnx")).classify(np.zeros((0, 3), dtype=np.float32))


def test_unnamed_dynamic_dimension_gets_a_name(tmp_path):
    model = Model(plain_model(tmp_path / "anon.onnx", dims=(None, 3)))
    assert model.inputs[0].shape == ("dim0", 3)
    assert model.predict(np.zeros((5, 3)))["y"].shape == (5, 4)


# ------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    "feed, fragments",
    [
        ({"inputs": np.zeros((1, 1, 32, 32))}, ["missing input 'input'", "unknown input 'inputs'"]),
        ({"input": np.zeros((1, 1, 32, 32)), "extra": 1}, ["unknown input 'extra'", "inputs are 'input'"]),
        (np.zeros((1, 32, 32), np.float32), ["input 'input'", "one sample", "(1, 32, 32)", "predict_one()"]),
        (
            np.zeros((2, 32, 32), np.float32),
            ["input 'input'", "expected 4 dimensions (batch, 1, 32, 32)", "got 3"],
        ),
        (
            np.zeros((1, 1, 28, 28), np.float32),
            ["input 'input'", "(batch, 1, 32, 32)", "(1, 1, 28, 28)", "dimension 2 is 28, expected 32"],
        ),
        (np.zeros((1, 3, 32, 32), np.float32), ["dimension 1 is 3, expected 1"]),
        (np.zeros((1, 1, 32, 32), np.complex64), ["input 'input'", "expected dtype float32", "complex64"]),
        (np.array([["a"] * 32] * 32), ["input 'input'"]),
        ([[1.0, 2.0], [3.0]], ["input 'input'", "ragged"]),
    ],
    ids=["missing", "unknown", "no-batch", "rank", "size", "channels", "complex", "strings", "ragged"],
)
def test_bad_inputs_are_named_value_errors(lenet, feed, fragments):
    with pytest.raises(InputError) as caught:
        lenet.predict(feed)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_non_finite_values_rejected_only_when_checked(lenet_path):
    x = np.zeros((2, 1, 32, 32), dtype=np.float32)
    x[0, 0, 3, 4], x[1, 0, 0, 0] = np.nan, np.inf
    with pytest.raises(InputError, match=r"input 'input': expected finite values, got 1 NaN, 1 Inf of 2048"):
        Model(lenet_path, providers="cpu", check_finite=True).predict(x)
    assert np.isnan(Model(lenet_path, providers="cpu").predict(x)["output"][0]).any()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_finds_nan_and_inf_and_survives_huge_values(dtype):
    huge = np.finfo(dtype).max / 2
    values = np.array([[0.5, -2.0, huge], [huge, 1.0, -huge]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # squares of huge values overflow by design
        assert all_finite(values)
        for bad in (np.nan, np.inf, -np.inf):
            broken = values.copy()
            broken[1, 2] = bad  # column 2 is also in the strided view below
            assert not all_finite(broken) and not all_finite(broken[:, ::2].T)


def test_integer_inputs_cast_safely_or_refuse(tmp_path):
    model = Model(plain_model(tmp_path / "int.onnx", input_type=TensorProto.INT32))
    assert model.inputs[0].dtype == "int32"
    small = np.array([[1, 2, 3]], dtype=np.int64)
    np.testing.assert_array_equal(model.predict(small)["y"], model.predict(small.astype(np.int32))["y"])
    model.predict(np.array([[True, False, True]]))
    with pytest.raises(InputError, match=r"input 'x': expected dtype int32, got float32, which would be truncated"):
        model.predict(np.array([[1.5, 2, 3]], dtype=np.float32))
    with pytest.raises(InputError, match=r"values 0\.\.4294967296, outside int32's range"):
        model.predict(np.array([[0, 1, 2**32]], dtype=np.int64))


def test_several_inputs_need_a_dict(tmp_path):
    model = Model(two_input_model(tmp_path / "two.onnx"))
    a, b = np.ones((2, 2), np.float32), np.full((2, 2), 2.0, np.float32)
    np.testing.assert_array_equal(model.predict({"a": a, "b": b})["sum"], a + b)
    np.testing.assert_array_equal(model.predict_one({"a": a[0], "b": b[0]})["sum"], (a + b)[0])
    with pytest.raises(InputError, match=r"has 2 inputs \('a', 'b'\): pass a dict"):
        model.predict(a)
    with pytest.raises(InputError, match="missing input 'b'"):
        model.predict({"a": a})


# ------------------------------------------------------------------------------- bad model files
def _bad_files(folder: Path, lenet_path: Path) -> dict[str, Path]:
    data = Path(lenet_path).read_bytes()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (folder / "text.onnx").write_text("this is not a model\n")
    (folder / "empty.onnx").write_bytes(b"")
    plain_model(folder / "unknown_op.onnx", op_type="NoSuchOperator")
    plain_model(folder / "future_opset.onnx", opset=99)
    return {name: folder / f"{name}.onnx" for name in ("truncated", "text", "empty", "unknown_op", "future_opset")}


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "model file not found"),
        ("folder", "is a folder without deploy.json"),
        ("empty", "is empty, not an ONNX model"),
        ("text", "is not an ONNX model"),
        ("truncated", "is a truncated or corrupt ONNX file"),
        ("unknown_op", "No Op registered for NoSuchOperator"),
        ("future_opset", "Opset 99"),
    ],
)
def test_bad_model_files_give_one_line(tmp_path, lenet_path, case, fragment):
    files = _bad_files(tmp_path, lenet_path)
    path = {"missing": tmp_path / "nope.onnx", "folder": tmp_path}.get(case) or files[case]
    with pytest.raises(ModelFileError) as caught:
        Model(path)
    message = str(caught.value)
    assert fragment in message and str(path) in message and "\n" not in message
    assert "onnxruntime_src" not in message and "[ONNXRuntimeError]" not in message


# ---------------------------------------------------------------------------------- providers
def test_resolve_providers_gives_the_chain_of_the_provider_asked(monkeypatch):
    here = {"cpu", "cuda", "tensorrt"}
    monkeypatch.setattr(providers, "unavailable_reason", lambda name: None if name in here else f"no {name} here")
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers.resolve_providers("auto") == everything
    assert providers.resolve_providers("cuda") == everything[1:]
    assert providers.resolve_providers("trt") == everything
    assert providers.resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == everything[1:]
    here.clear()
    here.add("cpu")
    assert providers.resolve_providers("auto") == ["CPUExecutionProvider"]
    assert providers.resolve_providers("cuda", fallback=True) == ["CPUExecutionProvider"]
    with pytest.raises(ProviderError, match="^no cuda here$"):
        providers.resolve_providers("cuda")
    with pytest.raises(ProviderError, match="unknown provider 'gpu': use one of auto, cpu, openvino, cuda, tensorrt"):
        providers.resolve_providers("gpu")


def test_auto_matches_what_onnxruntime_offers():
    chosen = providers.resolve_providers("auto")
    assert chosen and chosen[-1] == "CPUExecutionProvider"
    assert set(chosen) <= set(ort.get_available_providers())


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is installed")
def test_asking_for_a_missing_provider_is_an_error_not_a_fall_back(lenet_path):
    with pytest.raises(ProviderError, match="not available"):
        Model(lenet_path, providers="cuda")
    assert Model(lenet_path, providers="cuda", fallback=True).providers == ("CPUExecutionProvider",)


def test_threads_must_be_positive(lenet_path):
    with pytest.raises(EdgennError, match="threads must be a positive"):
        Model(lenet_path, threads=0)


# ------------------------------------------------------------------------------ thread safety
def test_eight_threads_share_one_model_with_sequential_results(lenet, test_inputs, monkeypatch):
    x = test_inputs[0][:50]
    expected = [lenet.predict(x[i : i + 1])["output"] for i in range(len(x))]
    sessions_created = []
    real_session = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: sessions_created.append(1) or real_session(*a, **k))
    calls, mismatches, errors = 1000, [], []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait(timeout=30)
            for j in range(calls):
                i = (worker * 7 + j) % len(x)
                if not np.array_equal(lenet.predict(x[i : i + 1])["output"], expected[i]):
                    mismatches.append((worker, j))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [] and mismatches == []
    assert sessions_created == []


# ----------------------------------------------------------------------------------- pictures
def test_pictures_classify_like_the_digits_they_show(lenet, digits):
    from PIL import Image

    images, labels = digits.test.images[:40], digits.test.labels[:40]
    direct = [r[0].index for r in lenet.classify(digits_input(lenet, images), top_k=1)]
    pixels = [digit_picture(img) for img in images]
    as_png = [lenet.classify_picture(png_bytes(p), 1)[0].index for p in pixels]
    as_array = [lenet.classify_picture(p, 1)[0].index for p in pixels]
    as_pil = [lenet.classify_picture(Image.fromarray(p), 1)[0].index for p in pixels]
    dark_ink = [lenet.classify_picture(png_bytes(digit_picture(img, dark_ink=True)), 1)[0].index for img in images]
    assert as_png == as_array == as_pil == dark_ink
    assert np.mean(np.array(as_png) == direct) >= 0.95
    assert np.mean(np.array(as_png) == labels) >= 0.9


def digits_input(model: Model, images: np.ndarray) -> np.ndarray:
    from edgenn.preprocess import digits_to_input

    return digits_to_input(images, model.preprocessing)


def test_transparent_drawing_is_read_on_white(lenet, digits):
    image = digits.test.images[0]
    ink = digit_picture(image)
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink  # black ink, opaque where the digit is, transparent elsewhere
    expected = lenet.classify_picture(png_bytes(ink), 1)[0].index
    assert lenet.classify_picture(png_bytes(rgba, "RGBA"), 1)[0].index == expected


def test_pictures_that_cannot_be_decoded(lenet, lenet_path, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputError, match="cannot decode picture .*broken.png"):
        lenet.classify_picture(broken)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(digit_picture(np.eye(8, dtype=np.float32)))[:60])
    with pytest.raises(InputError, match="cannot decode picture"):
        lenet.classify_picture(truncated)
    with pytest.raises(InputError, match="picture not found"):
        lenet.classify_picture(tmp_path / "absent.png")
    with pytest.raises(InputError, match=r"float picture must hold values in \[0, 1\], got 0..16"):
        lenet.classify_picture(np.linspace(0, 16, 64).reshape(8, 8))


# ------------------------------------------------------------------------------------ layering
BLOCKED = ("torch", "onnxscript", "sklearn", "onnx", "click", "tqdm", "safetensors")


def test_runtime_works_with_torch_onnxscript_and_sklearn_absent(lenet_path, tmp_path):
    picture = tmp_path / "digit.png"
    picture.write_bytes(png_bytes(digit_picture(np.eye(8, dtype=np.float32))))
    script = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # any import of them now raises ImportError
import numpy as np
import edgenn.runtime
from edgenn.runtime import Model
model = Model({str(lenet_path)!r}, providers="cpu")
out = model.predict(np.zeros((2, 1, 32, 32), np.float32))["output"]
assert out.shape == (2, 10)
print(model.classify_picture({str(picture)!r}, top_k=1)[0].label)
loaded = sorted(n for n in {BLOCKED!r} if sys.modules.get(n) is not None)
print("heavy modules loaded:", loaded)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] in DIGITS and lines[1] == "heavy modules loaded: []"


def test_pillow_missing_is_a_clear_error(lenet_path, tmp_path):
    script = f"""
import sys
sys.modules["PIL"] = None
from edgenn.runtime import Model
try:
    Model({str(lenet_path)!r}, providers="cpu").classify_picture({str(tmp_path / "x.png")!r})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.strip() == "EdgennError reading pictures needs Pillow: pip install pillow (or pass a .npy array)"


# tables.py and timing.py are here for `edgenn verify`, which runs on a runtime-only install (no click)
BOTTOM_LAYER = [
    "edgenn/errors.py",
    "edgenn/specs.py",
    "edgenn/preprocess.py",
    "edgenn/parity.py",
    "edgenn/timing.py",
    "edgenn/tables.py",
]
ALLOWED_EDGENN = {f"edgenn.{Path(p).stem}" for p in BOTTOM_LAYER} | {"edgenn"}
# third-party modules the bottom layer may import beyond numpy and onnxruntime, and why
ALLOWED_THIRD_PARTY = {
    "PIL": "picture files, imported when one is read",
    "google": "protobuf, which onnxruntime requires: Triton's config schema (runtime/triton.py)",
    "rich": "terminal tables in tables.py, imported only where installed (the full extra)",
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_bottom_layer_imports_only_numpy_onnxruntime_and_itself():
    files = BOTTOM_LAYER + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "edgenn" / "runtime").glob("*.py"))
    assert "edgenn/runtime/model.py" in files
    for name in files:
        for module in imported_modules(ROOT / name):
            top = module.split(".")[0]
            if top == "edgenn":
                assert module in ALLOWED_EDGENN or module.startswith("edgenn.runtime"), f"{name} imports {module}"
            else:
                allowed = top in sys.stdlib_module_names or top in ("numpy", "onnxruntime", *ALLOWED_THIRD_PARTY)
                assert allowed, f"{name} imports {module}: the bottom layer may use numpy and onnxruntime only"


def test_integer_pictures_out_of_range_name_the_file(lenet):
    from edgenn.runtime.files import classify_array

    for pixels in (-1, 70_000):
        with pytest.raises(InputError, match=r"neg\.npy: integer pixels must lie in 0\.\.255"):
            classify_array(lenet, np.full((8, 8), pixels, np.int64), name="neg.npy")
