"""Nothing silently wrong: damaged files refused at load, doubtful ones warned about, strict metadata,
bounded memory, pictures refused before decoding (issue 17). Mutants are made from a real exported model."""

from __future__ import annotations

import io
import json
import random
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgenn.cli import cli
from edgenn.errors import InputError, ModelFileError, ModelWarning
from edgenn.runtime import Model, integrity
from edgenn.runtime.image import PictureTooLarge
from edgenn.runtime.session import SessionConfig
from edgenn.specs import META_DIGEST, META_FORMAT, META_PREPROCESSING, META_SOURCE_DIGEST

FLIPS = 40  # seeded byte flips per model here; tools/fault_campaign.py runs thousands


@pytest.fixture(scope="module")
def lenet_file(exported) -> Path:
    return exported("lenet5")


@pytest.fixture(scope="module")
def tuned_lenet(lenet_file, tmp_path_factory) -> Path:
    """A deployment with two routes (fp32 for 1-8, dynamic int8 for 9+), written as tune writes one."""
    from edgenn import tune as tune_module
    from edgenn.tune import REFERENCE, TuneOptions, tune

    original = tune_module._measure_point
    forced = {1: REFERENCE, 64: "dynamic@cpu"}

    def measure(candidates, runners, samples, threads, batch, seconds):
        _, ranking = original(candidates, runners, samples, threads, batch, seconds)
        return forced[batch], [forced[batch], *[i for i in ranking if i != forced[batch]]]

    out = tmp_path_factory.mktemp("tuned") / "deploy"
    tune_module._measure_point = measure
    try:
        options = TuneOptions(batches=(1, 64), threads=(1,), providers=("cpu",), time_budget=22.0, recipes=("dynamic",))
        tune(lenet_file, out, options)
    finally:
        tune_module._measure_point = original
    return out


def load(path: Path, **kwargs) -> tuple[Model | None, Exception | None, list[str]]:
    """Model(path): (model, None, warnings) or (None, the error, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = Model(path, providers="cpu", threads=1, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test looks at what it is
            return None, exc, [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]
    return model, None, [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]


def unsealed(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model as someone else's tool would leave it: edgenn's digest and metadata format removed."""
    return integrity.unseal(model)


def with_initializer(model: onnx.ModelProto, name: str, change) -> onnx.ModelProto:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    values = numpy_helper.to_array(tensor).copy()
    change(values)
    tensor.CopyFrom(numpy_helper.from_array(values, name))
    return model


# ------------------------------------------------------------------------------------------ digest
def test_export_seals_the_file_and_the_digest_is_checked(lenet_file):
    data = lenet_file.read_bytes()
    digest = integrity.file_digest(data)
    assert digest is not None and digest.startswith(integrity.DIGEST_SCHEME) and len(digest) == integrity.DIGEST_LENGTH
    facts = integrity.examine(data, "lenet5")
    assert facts.digest == digest and facts.metadata[META_FORMAT] == "2" and not facts.warnings
    model, error, said = load(lenet_file)
    assert error is None and not said and model._runner.facts.digest == digest


def test_every_byte_flip_and_truncation_is_refused(lenet_file, tmp_path):
    data = lenet_file.read_bytes()
    rng = random.Random(17)
    ran = []
    for k in range(FLIPS):
        position = rng.randrange(len(data))
        mutant = bytearray(data)
        mutant[position] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{k}.onnx"
        path.write_bytes(bytes(mutant))
        model, error, _ = load(path)
        if error is None:
            ran.append(position)
        else:
            assert isinstance(error, ModelFileError) and str(path) in str(error)
    assert ran == []  # 0 of FLIPS load and run (the digest covers every byte, its own entry included)
    # cuts anywhere, and at the boundaries a protobuf parser accepts: the end of the graph (the graph's own
    # metadata still says the file had a digest) and before each metadata entry
    graph_end = integrity._model_parts(data).graph[1]
    entries = [data.rfind(key.encode()) - 4 for key in (META_FORMAT, META_DIGEST, META_PREPROCESSING)]
    for length in (len(data) // 3, len(data) - 100, len(data) - 1, graph_end, *entries):
        path = tmp_path / f"cut{length}.onnx"
        path.write_bytes(data[:length])
        _, error, _ = load(path)
        assert isinstance(error, ModelFileError), length


def test_an_edited_file_is_refused_and_an_unchanged_round_trip_is_not(lenet_file, tmp_path):
    same = tmp_path / "same.onnx"
    onnx.save(onnx.load(str(lenet_file)), str(same))  # onnx writes back the same bytes
    assert load(same)[1] is None
    edited = onnx.load(str(lenet_file))
    edited.metadata_props.add(key="owner", value="me")
    onnx.save(edited, str(tmp_path / "edited.onnx"))
    _, error, _ = load(tmp_path / "edited.onnx")
    assert isinstance(error, ModelFileError) and "no longer matches the digest" in str(error)
    assert "metadata='ignore'" in str(error)
    plain, error, _ = load(tmp_path / "edited.onnx", metadata="ignore")
    assert error is None and plain.preprocessing is None and plain.labels == tuple(str(i) for i in range(10))
    # a digest entry lost while the metadata format says there was one: damage, not an old file
    lost = onnx.load(str(lenet_file))
    kept = [(p.key, p.value) for p in lost.metadata_props if p.key != META_DIGEST]
    del lost.metadata_props[:]
    for key, value in kept:
        lost.metadata_props.add(key=key, value=value)
    onnx.save(lost, str(tmp_path / "lost.onnx"))
    _, error, _ = load(tmp_path / "lost.onnx")
    assert isinstance(error, ModelFileError) and "digest, and it is gone" in str(error)


def test_files_without_a_digest_still_load(lenet_file, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    onnx.save(unsealed(onnx.load(str(lenet_file))), str(foreign))
    model, error, said = load(foreign)
    assert error is None and not said and model._runner.facts.digest is None
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x)["output"], load(lenet_file)[0].predict(x)["output"])


def test_quantize_seals_its_file_and_names_its_source(lenet_file, tmp_path):
    from edgenn.quantize import QuantizeOptions, quantize

    out = tmp_path / "lenet5.dynamic.onnx"
    quantize(lenet_file, out, QuantizeOptions(mode="dynamic", providers=("cpu",)))
    facts = integrity.examine(out.read_bytes(), "q")
    assert facts.digest is not None and facts.digest != integrity.file_digest(lenet_file.read_bytes())
    assert facts.metadata[META_SOURCE_DIGEST] == integrity.file_digest(lenet_file.read_bytes())


# ---------------------------------------------------------------------------------- field edits
@pytest.fixture(scope="module")
def quantized_file(lenet_file, tmp_path_factory) -> Path:
    from edgenn.quantize import QuantizeOptions, quantize

    out = tmp_path_factory.mktemp("static") / "lenet5.static.onnx"
    quantize(lenet_file, out, QuantizeOptions(mode="static", providers=("cpu",)))
    return out


def _first_scale(model: onnx.ModelProto) -> str:
    names = {t.name for t in model.graph.initializer}
    return next(n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in names)


@pytest.mark.parametrize("sealed", [True, False], ids=["digest kept", "digest stripped"])
def test_field_edit_mutants_never_run_unnoticed(lenet_file, quantized_file, tmp_path, sealed):
    def weight(change):
        return lambda: with_initializer(onnx.load(str(lenet_file)), "conv1.weight", change)

    def scale(value):
        def make():
            model = onnx.load(str(quantized_file))
            return with_initializer(model, _first_scale(model), lambda v: v.flat.__setitem__(0, value))

        return make

    def shadow():
        model = onnx.load(str(lenet_file))
        model.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 32, 32), np.float32), "input"))
        return model

    mutants = {
        "nan weight": (weight(lambda v: v.flat.__setitem__(0, np.nan)), "error", "NaN"),
        "inf weight": (weight(lambda v: v.flat.__setitem__(0, np.inf)), "warning", "infinite"),
        "zero scale": (scale(0.0), "error", "quantization scale"),
        "negative scale": (scale(-0.5), "error", "quantization scale"),
        "nan scale": (scale(np.nan), "error", "quantization scale"),
        "shadowed input": (shadow, "error", "shadowed by an initializer"),
    }
    unnoticed = []
    for label, (make, severity, fragment) in mutants.items():
        model = make()
        path = tmp_path / f"{label.replace(' ', '_')}.onnx"
        onnx.save(model if sealed else unsealed(model), str(path))
        loaded, error, said = load(path)
        if sealed:  # edited after export: the digest says so first
            assert isinstance(error, ModelFileError) and "digest" in str(error), label
            continue
        if severity == "error":
            assert isinstance(error, ModelFileError) and fragment in str(error) and "error:" in str(error), label
        else:
            assert error is None and len(said) == 1 and fragment in said[0] and "warning:" in said[0], label
        if error is None and not said:
            unnoticed.append(label)
    assert unnoticed == []


def test_a_graph_with_no_inputs_is_refused(tmp_path):
    const = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(3, np.float32)))
    graph = helper.make_graph([const], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    path = tmp_path / "constant.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _, error, _ = load(path)
    assert isinstance(error, ModelFileError) and "no inputs" in str(error)


def test_weights_that_are_also_inputs_are_a_warning_not_an_error(tmp_path):
    # old exporters (keep_initializers_as_inputs) list every weight as a graph input with a default
    w = numpy_helper.from_array(np.full((4, 4), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", ["n", 4]), ("w", [4, 4]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [w],
    )
    path = tmp_path / "old.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model, error, said = load(path)
    assert error is None and len(said) == 1 and "'w'" in said[0] and "warning:" in said[0]
    assert [s.name for s in model.inputs] == ["x"]
    np.testing.assert_allclose(model.predict(np.ones((2, 4), np.float32))["y"], np.full((2, 4), 2.0))


# ---------------------------------------------------------------------------------------- metadata
def _with_metadata(source: Path, target: Path, key: str, value: str | bytes) -> Path:
    model = unsealed(onnx.load(str(source)))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    if isinstance(value, bytes):  # protobuf's Python API will not store bytes that are not UTF-8: patch the file
        model.metadata_props.add(key=key, value="\x01" * len(value))
        data = model.SerializeToString().replace(b"\x01" * len(value), value)
        target.write_bytes(data)
    else:
        model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(target))
    return target


BAD_METADATA = {
    "size zero": (META_PREPROCESSING, {"size": [0, 0]}, "from 1 to"),
    "size text": (META_PREPROCESSING, {"size": "ab"}, "pair"),
    "size huge": (META_PREPROCESSING, {"size": [200000, 200000]}, "from 1 to"),
    "source size huge": (META_PREPROCESSING, {"source_size": [200000, 200000]}, "from 1 to"),
    "scale not a number": (META_PREPROCESSING, {"value_scale": "x"}, "wrong type"),
    "labels not a list": ("edgenn.labels", {"a": 1}, "non-empty JSON list"),
    "labels miscounted": ("edgenn.labels", ["a", "b"], "2 labels for an output of 10 classes"),
    "inputs not JSON": ("edgenn.inputs", "{", "not valid JSON"),
    "input shape wrong": ("edgenn.inputs", [{"name": "input", "shape": "x"}], "shape"),
    "dim sizes negative": ("edgenn.dim_sizes", {"len": -1}, "positive sizes"),
    "accuracy not a fraction": ("edgenn.test_accuracy", "7", "fraction"),
    "value scale not finite": (META_PREPROCESSING, {"value_scale": "nan"}, "value_scale"),
    "mean as text": (META_PREPROCESSING, {"layout": "NCHW", "color": "rgb", "mean": "123"}, "list of numbers"),
    "deeply nested inputs": ("edgenn.inputs", "[" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_one_line_naming_the_key_at_load(case, lenet_file, tmp_path):
    key, value, fragment = BAD_METADATA[case]
    if key == META_PREPROCESSING:
        stored = {p.key: p.value for p in onnx.load(str(lenet_file)).metadata_props}[key]
        value = json.dumps({**json.loads(stored), **value})
    elif not isinstance(value, str):
        value = json.dumps(value)
    path = _with_metadata(lenet_file, tmp_path / "bad.onnx", key, value)
    _, error, _ = load(path)
    assert isinstance(error, ModelFileError) and f"metadata {key}" in str(error) and fragment in str(error)
    assert "\n" not in str(error)
    plain, error, _ = load(path, metadata="ignore")  # still runs as a plain ONNX model when asked
    assert error is None and plain.predict(np.zeros((1, 1, 32, 32), np.float32))["output"].shape == (1, 10)


def test_metadata_that_is_not_utf8(lenet_file, tmp_path):
    path = _with_metadata(lenet_file, tmp_path / "latin1.onnx", "edgenn.labels", b'["caf\xe9"]')
    _, error, _ = load(path)
    assert isinstance(error, ModelFileError) and "edgenn.labels is not UTF-8" in str(error)
    assert load(path, metadata="ignore")[1] is None
    # someone else's key: not ours to judge, left out
    other = _with_metadata(lenet_file, tmp_path / "other.onnx", "author", b"Jos\xe9")
    model, error, _ = load(other)
    assert error is None and "author" not in model.metadata


def test_predict_one_with_a_ragged_list(lenet_file):
    model = load(lenet_file)[0]
    with pytest.raises(InputError, match="ragged"):
        model.predict_one([[[0.0] * 32] * 31 + [[0.0] * 5]])


def test_cli_names_damage_in_one_line_and_warns_in_one_line(lenet_file, tmp_path):
    damaged = bytearray(lenet_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    (tmp_path / "damaged.onnx").write_bytes(bytes(damaged))
    picture = tmp_path / "x.npy"
    np.save(picture, np.zeros((1, 1, 32, 32), np.float32))
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(tmp_path / "damaged.onnx"), str(picture)])
    assert result.exit_code == 1 and "no longer matches the digest" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    inf = with_initializer(onnx.load(str(lenet_file)), "conv1.weight", lambda v: v.flat.__setitem__(0, np.inf))
    onnx.save(unsealed(inf), str(tmp_path / "inf.onnx"))
    result = runner.invoke(cli, ["predict", str(tmp_path / "inf.onnx"), str(picture)])
    assert result.exit_code == 0
    said = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(said) == 1 and "infinite" in said[0]
    edited = onnx.load(str(lenet_file))
    edited.metadata_props.add(key="owner", value="me")  # an edit after export: the digest refuses it
    onnx.save(edited, str(tmp_path / "edited.onnx"))
    result = runner.invoke(cli, ["predict", str(tmp_path / "edited.onnx"), str(picture)])
    assert result.exit_code == 1 and "--ignore-metadata" in result.output
    result = runner.invoke(cli, ["predict", str(tmp_path / "edited.onnx"), str(picture), "--ignore-metadata", "--json"])
    assert result.exit_code == 0, result.output
    plain = json.loads(result.output)
    assert [p["label"] for p in plain["predictions"][0]][:1] == [str(plain["predictions"][0][0]["index"])]


# ------------------------------------------------------------------------------------------ memory
def test_chunked_batches_are_bitwise_equal_to_one_call(lenet_file):
    x = np.random.default_rng(3).random((1000, 1, 32, 32), dtype=np.float32)
    whole = load(lenet_file, max_batch=None)[0].predict(x)["output"]
    for max_batch in (1, 7, 64, 999):
        chunked = load(lenet_file, max_batch=max_batch)[0]
        np.testing.assert_array_equal(chunked.predict(x)["output"], whole)
    strided = np.empty((2000, 1, 32, 32), np.float64)
    strided[::2] = x
    np.testing.assert_array_equal(load(lenet_file, max_batch=64)[0].predict(strided[::2])["output"], whole)
    lean = load(lenet_file, memory="lean", max_batch=None)[0]
    assert lean.config.memory == "lean"
    np.testing.assert_array_equal(lean.predict(x)["output"], whole)
    every_core = Model(lenet_file, providers="cpu", max_batch=None).predict(x)["output"]  # default threads
    np.testing.assert_array_equal(Model(lenet_file, providers="cpu", max_batch=64).predict(x)["output"], every_core)


def test_chunking_two_inputs_and_the_default(two_input_onnx):
    from edgenn.runtime.model import DEFAULT_MAX_BATCH

    rng = np.random.default_rng(4)
    model = load(two_input_onnx)[0]
    assert model.max_batch == DEFAULT_MAX_BATCH
    image_spec, features_spec = model.inputs
    size = DEFAULT_MAX_BATCH * 2 + 3
    feeds = {
        s.name: rng.random((size, *[d for d in s.shape[1:] if isinstance(d, int)]), dtype=np.float32)
        for s in model.inputs
    }
    calls = []
    real = model._run
    model._run = lambda names, f, o: calls.append(len(next(iter(f.values())))) or real(names, f, o)
    chunked = model.predict(feeds)
    assert calls == [DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH, 3]
    whole = load(two_input_onnx, max_batch=None)[0].predict(feeds)
    for name in whole:
        np.testing.assert_array_equal(chunked[name], whole[name])
    with pytest.raises(InputError, match="max_batch"):
        Model(two_input_onnx, max_batch=0)


def test_batches_are_chunked_only_along_a_batch_dim(tmp_path):
    # time-major: (seq, batch, features) in and out; splitting along seq would be wrong, so it is not done
    graph = helper.make_graph(
        [helper.make_node("CumSum", ["x", "axis"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", "batch", 2])],
        [numpy_helper.from_array(np.array(0, np.int64), "axis")],
    )
    path = tmp_path / "time_major.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = load(path, max_batch=4)[0]
    x = np.ones((10, 3, 2), np.float32)
    np.testing.assert_array_equal(model.predict(x)["y"][:, 0, 0], np.arange(1, 11))  # one call, along seq
    assert not model._chunkable


def test_a_deployment_runs_every_chunk_on_the_route_of_the_whole_batch(tuned_lenet):
    model = Model(tuned_lenet, threads=1, max_batch=4)
    whole = model.member_for(10)
    ran = []
    for member in {id(model.member_for(b)): model.member_for(b) for b in (1, 4, 10)}.values():
        real = member._run
        member._run = lambda names, feeds, options, real=real, member=member: (
            ran.append(member) or real(names, feeds, options)
        )
    model.predict(np.zeros((10, 1, 32, 32), np.float32))
    assert ran == [whole] * 3  # chunks of 4, 4 and 2, all on the route for 10, whatever theirs would be


def test_memory_mode_is_part_of_the_session_config():
    config = SessionConfig(memory="lean").checked()
    assert SessionConfig.from_dict(config.to_dict()) == config
    assert SessionConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "memory"}).memory == "arena"
    with pytest.raises(InputError, match="memory mode"):
        SessionConfig(memory="small").checked()


# ---------------------------------------------------------------------------------------- pictures
def test_a_huge_picture_is_refused_before_it_is_decoded(lenet_file, monkeypatch):
    from PIL import Image, ImageFile

    buffer = io.BytesIO()
    Image.new("L", (5000, 4000)).save(buffer, format="PNG")  # 25 KB on disk, 20 million pixels
    data = buffer.getvalue()
    assert len(data) < 100_000
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    model = load(lenet_file)[0]
    with pytest.raises(PictureTooLarge, match="5000x4000 picture; at most 16777216 pixels"):
        model.classify_picture(data)
    assert decoded == []
    assert model.classify_picture(data, max_pixels=25_000_000)[0].label in model.labels and decoded
