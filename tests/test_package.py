"""edgenn package (bundle, ORT format, Triton repository) and edgenn verify: what arrives is what was validated."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from test_user_models import _script

from edgenn.cli import cli
from edgenn.errors import EdgennError, InputError, ModelFileError
from edgenn.fileio import temp_tag
from edgenn.package import PackageOptions, package
from edgenn.runtime.integrity import unseal
from edgenn.runtime.manifest import MANIFEST_FILE, read_manifest, seal
from edgenn.runtime.verify import verify_package
from edgenn.specs import TensorSpec

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
NODE_SCRIPT = ROOT / "tools" / "node" / "golden.mjs"


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def two_inputs(two_input_onnx) -> Path:
    return two_input_onnx


def _source(name: str, two_inputs: Path) -> Path:
    return two_inputs if name == "two_inputs" else MODELS / name / "model.onnx"


def triton_schema():
    """Triton's model_config protobuf, straight from tritonclient's file (independent of edgenn's loader)."""
    spec = importlib.util.find_spec("tritonclient")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    loader = importlib.util.spec_from_file_location("test_model_config_pb2", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite_manifest(folder: Path, change) -> None:
    """Edit manifest.json and re-seal its content digest, as a newer or a careless tool would."""
    data = json.loads((folder / MANIFEST_FILE).read_text())
    change(data)
    data["manifest_sha256"] = "0" * 64
    (folder / MANIFEST_FILE).write_text(seal(json.dumps(data, indent=2)))


# ------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("fmt", ["bundle", "ort", "triton"])
@pytest.mark.parametrize("name", ["lenet5", "gru", "two_inputs"])
def test_every_format_packages_and_verifies(name, fmt, two_inputs, tmp_path):
    source = _source(name, two_inputs)
    result = package(source, tmp_path / "pkg", PackageOptions(format=fmt))
    manifest = read_manifest(tmp_path / "pkg")
    assert manifest.kind == fmt
    reference = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    assert [s.name for s in manifest.inputs] == [i.name for i in reference.get_inputs()]
    assert [s.name for s in manifest.outputs] == [o.name for o in reference.get_outputs()]
    # golden outputs are the validated .onnx file's own, on real inputs where edgenn has them
    for case in manifest.golden:
        feeds = {n: np.load(tmp_path / "pkg" / f) for n, f in case.inputs}
        expected = dict(zip([o.name for o in reference.get_outputs()], reference.run(None, feeds)))
        for n, f in case.outputs:
            np.testing.assert_allclose(np.load(tmp_path / "pkg" / f), expected[n], rtol=1e-5, atol=1e-6)
    if name != "two_inputs":
        assert manifest.source["golden_inputs"] == "digits test split"
        assert manifest.labels == tuple(str(i) for i in range(10))
    assert [c.batch for c in manifest.golden] == [1, 8]
    report = verify_package(tmp_path / "pkg")
    assert report.passed, report.failures
    assert all(c.median_ms and c.median_ms > 0 for c in report.cases)
    assert result.verify.passed


def test_ort_file_loads_in_a_fresh_session_and_matches_golden(tmp_path):
    package(MODELS / "resnet" / "model.quant.onnx", tmp_path / "pkg", PackageOptions(format="ort"))
    manifest = read_manifest(tmp_path / "pkg")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.load_model_format", "ORT")
    session = ort.InferenceSession(
        (tmp_path / "pkg" / "model.ort").read_bytes(), options, providers=["CPUExecutionProvider"]
    )
    assert manifest.precision == "int8" and manifest.golden[0].tolerance.kind == "range"
    for case in manifest.golden:
        feeds = {n: np.load(tmp_path / "pkg" / f) for n, f in case.inputs}
        got = session.run(None, feeds)[0]
        golden = np.load(tmp_path / "pkg" / case.outputs[0][1])
        assert np.abs(got - golden).max() <= case.tolerance.max_relative * np.abs(golden).max()
    operators = (tmp_path / "pkg" / "required_operators.config").read_text()
    assert "QLinearConv" in operators and "ai.onnx;" in operators
    assert manifest.ort["style"] == "fixed" and "NCHWc" in manifest.ort["note"]
    assert manifest.machine["cpu_model"]  # the CPU whose layout a fixed-style file bakes in


def test_ort_runtime_style_and_type_reduction(tmp_path):
    package(
        MODELS / "lenet5" / "model.onnx",
        tmp_path / "pkg",
        PackageOptions(format="ort", ort_style="runtime", type_reduction=True),
    )
    manifest = read_manifest(tmp_path / "pkg")
    assert manifest.session.config_entries == (("session.enable_saved_runtime_optimizations", "1"),)
    text = (tmp_path / "pkg" / "required_operators_and_types.config").read_text()
    assert "{" in text and "float" in text  # per-operator type lists
    assert verify_package(tmp_path / "pkg").passed


def test_triton_config_parses_with_tritons_protobuf(tmp_path):
    from google.protobuf import text_format

    package(
        MODELS / "lenet5" / "model.onnx",
        tmp_path / "repo",
        PackageOptions(format="triton", max_batch_size=32, instances=2, threads=1),
    )
    pb = triton_schema()
    config = text_format.Parse((tmp_path / "repo" / "lenet5" / "config.pbtxt").read_text(), pb.ModelConfig())
    assert config.name == "lenet5" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert [(i.name, list(i.dims), pb.DataType.Name(i.data_type)) for i in config.input] == [
        ("input", [1, 32, 32], "TYPE_FP32")
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [10])]
    assert config.output[0].label_filename == "labels.txt"
    assert (tmp_path / "repo" / "lenet5" / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert config.HasField("dynamic_batching")
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert (tmp_path / "repo" / "lenet5" / "1" / "model.onnx").read_bytes() == (
        MODELS / "lenet5" / "model.onnx"
    ).read_bytes()
    # Triton takes every folder of the repository for a model: nothing but the model's may be one
    assert [p.name for p in (tmp_path / "repo").iterdir() if p.is_dir()] == ["lenet5"]


def test_triton_two_inputs_maps_every_input_and_output(two_inputs, tmp_path):
    from google.protobuf import text_format

    package(two_inputs, tmp_path / "repo", PackageOptions(format="triton", name="towers"))
    config = text_format.Parse(
        (tmp_path / "repo" / "towers" / "config.pbtxt").read_text(), triton_schema().ModelConfig()
    )
    assert {i.name: list(i.dims) for i in config.input} == {"image": [1, 16, 16], "features": [5]}
    assert {o.name: list(o.dims) for o in config.output} == {"logits": [4], "score": [1]}


def test_a_deployment_bundles_whole_and_each_route_has_golden(tmp_path):
    package(MODELS / "simple_cnn" / "deploy", tmp_path / "pkg")
    manifest = read_manifest(tmp_path / "pkg")
    deploy = json.loads((MODELS / "simple_cnn" / "deploy" / "deploy.json").read_text())
    routes = deploy["profiles"][0]["routes"]
    assert manifest.model_format == "deployment" and len(manifest.golden) == len(routes)
    assert [c.candidate for c in manifest.golden] == [r["choice"] for r in routes]
    assert (tmp_path / "pkg" / "deploy" / "deploy.json").read_bytes() == (
        MODELS / "simple_cnn" / "deploy" / "deploy.json"
    ).read_bytes()
    assert verify_package(tmp_path / "pkg").passed


def test_triton_from_a_deployment_takes_its_batch_choice(tmp_path):
    package(MODELS / "simple_cnn" / "deploy", tmp_path / "repo", PackageOptions(format="triton"))
    manifest = read_manifest(tmp_path / "repo")
    deploy = json.loads((MODELS / "simple_cnn" / "deploy" / "deploy.json").read_text())
    big = next(r for r in deploy["profiles"][0]["routes"] if r["batch_max"] is None)
    candidates = {c["id"]: c for c in deploy["candidates"]}

    def expressible(c):  # what Triton's config can say: a shipped file, a plain session at f32
        session = c["session"]
        return c.get("shipped", True) and not session.get("disabled_optimizers") and not session.get(
            "config_entries"
        ) and session.get("precision", "f32") == "f32"

    expected = next(i for i in big["ranking"] if expressible(candidates[i]))
    assert manifest.source["candidate"] == expected  # the whole batch's choice, or the first Triton can express
    assert manifest.triton["name"] == "simple_cnn"
    assert manifest.triton["threads"] == deploy["profiles"][0]["threads"]


def _shared_bias_model(path: Path, bias: bool = True) -> Path:
    """y = a (+ b), per-row sums s: `b` has no batch dim, `s` is one value per sample, `len` is dynamic."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["y"]) if bias else helper.make_node("Identity", ["a"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "len"])]
    if bias:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, ["len"]))
    graph = helper.make_graph(
        nodes,
        "shared_bias",
        inputs,
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "len"]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch"]),
        ],
        [onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_input_sizes_an_unbatched_input_and_one_value_per_sample(tmp_path):
    from google.protobuf import text_format

    model = _shared_bias_model(tmp_path / "bias.onnx")
    with pytest.raises(InputError, match=r"dynamic dimension 'len'.*--input a:1x8:float32, or --data"):
        package(model, tmp_path / "x")
    sizes = (TensorSpec.parse("a:1x16"),)
    package(model, tmp_path / "pkg", PackageOptions(input_specs=sizes))
    manifest = read_manifest(tmp_path / "pkg")
    shapes = [{n: np.load(tmp_path / "pkg" / f).shape for n, f in c.inputs} for c in manifest.golden]
    assert shapes == [{"a": (1, 16), "b": (16,)}, {"a": (8, 16), "b": (16,)}]  # b is never cut or repeated
    assert verify_package(tmp_path / "pkg").passed

    with pytest.raises(InputError, match=r"input 'b' is \(len\): its first dim is not the batch dim 'batch'"):
        package(model, tmp_path / "x", PackageOptions(format="triton", input_specs=sizes))
    unbiased = _shared_bias_model(tmp_path / "sums.onnx", bias=False)
    package(unbiased, tmp_path / "repo", PackageOptions(format="triton", input_specs=sizes))
    config = text_format.Parse((tmp_path / "repo" / "sums" / "config.pbtxt").read_text(), triton_schema().ModelConfig())
    s = next(o for o in config.output if o.name == "s")
    assert list(s.dims) == [1] and s.HasField("reshape") and list(s.reshape.shape) == []
    assert verify_package(tmp_path / "repo").passed


# --------------------------------------------------------------------------------- tampering
@pytest.mark.parametrize("fmt", ["bundle", "triton"])
def test_one_changed_byte_in_any_file_fails_verify_naming_it(fmt, tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg", PackageOptions(format=fmt))
    files = sorted(p.relative_to(tmp_path / "pkg").as_posix() for p in (tmp_path / "pkg").rglob("*") if p.is_file())
    assert MANIFEST_FILE in files and len(files) >= 6
    for name in files:
        copy = tmp_path / "tampered"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(tmp_path / "pkg", copy)
        _flip(copy / name)
        result = run("verify", copy)
        assert result.exit_code != 0, name
        assert name in result.output.strip().splitlines()[-1], (name, result.output)


def test_verify_refuses_what_is_not_a_package_or_is_incomplete(tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg")
    result = run("verify", tmp_path)
    assert result.exit_code == 1 and "not a package made by edgenn package" in result.output
    result = run("verify", tmp_path / "nothing")
    assert result.exit_code == 1 and "not found" in result.output

    newer = tmp_path / "newer"
    shutil.copytree(tmp_path / "pkg", newer)
    _rewrite_manifest(newer, lambda d: d.update(version=99))
    result = run("verify", newer)
    assert result.exit_code == 1 and "newer edgenn" in result.output and "upgrade" in result.output

    missing = tmp_path / "missing"
    shutil.copytree(tmp_path / "pkg", missing)
    (missing / "golden.0.in.0.npy").unlink()
    result = run("verify", missing)
    assert result.exit_code == 3 and "golden.0.in.0.npy: missing" in result.output

    added = tmp_path / "added"
    shutil.copytree(tmp_path / "pkg", added)
    (added / "notes.txt").write_text("hello")
    assert "notes.txt: not in the manifest" in run("verify", added).output

    outside = tmp_path / "outside"
    shutil.copytree(tmp_path / "pkg", outside)
    _rewrite_manifest(outside, lambda d: d["files"].update({"../secret": "0" * 64}))
    result = run("verify", outside)
    assert result.exit_code == 1 and "not a path inside the package" in result.output


def test_golden_outputs_that_no_longer_match_fail_verify(tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg")
    # a model changed after packaging, with the digests made to agree (the manifest's, and the model's own
    # edgenn digest removed): only the golden run can tell
    model = unseal(onnx.load(str(tmp_path / "pkg" / "model.onnx")))
    weights = next(t for t in model.graph.initializer if len(t.dims) == 4)
    array = onnx.numpy_helper.to_array(weights) * 1.01
    weights.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), weights.name))
    onnx.save(model, str(tmp_path / "pkg" / "model.onnx"))
    from edgenn.runtime.deploy import file_sha256

    digest = file_sha256(tmp_path / "pkg" / "model.onnx")
    _rewrite_manifest(tmp_path / "pkg", lambda d: d["files"].update({"model.onnx": digest}))
    report = verify_package(tmp_path / "pkg")
    assert not report.passed
    assert report.failures[0].startswith("golden batch 1, output 'output'")
    result = run("verify", tmp_path / "pkg", "--json")
    assert result.exit_code == 3 and json.loads(result.output)["passed"] is False


# ---------------------------------------------------------------------------------- bad input
def test_bad_models_and_formats_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        package(garbage, tmp_path / "a")
    with pytest.raises(ModelFileError, match="not found"):
        package(tmp_path / "nope.onnx", tmp_path / "a")

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
    )
    invalid = tmp_path / "invalid.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(invalid))
    with pytest.raises(ModelFileError, match="not a valid ONNX model: Graph output 'z'"):
        package(invalid, tmp_path / "a")

    fixed = tmp_path / "fixed.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fixed))
    with pytest.raises(InputError, match=r"cannot be batched by Triton: input 'x' is \(4, 2\).*--max-batch-size 0"):
        package(fixed, tmp_path / "a", PackageOptions(format="triton"))
    package(fixed, tmp_path / "fixed-repo", PackageOptions(format="triton", max_batch_size=0))
    assert verify_package(tmp_path / "fixed-repo").passed

    custom = tmp_path / "custom.onnx"
    graph = helper.make_graph(
        [helper.make_node("Foo", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(custom))
    result = run("package", custom, "--format", "ort", "-o", tmp_path / "a")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "ORT converter refused" in line and "com.example:Foo" in line and "Traceback" not in result.output
    assert not (tmp_path / "a").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".a.")] == []


def test_an_existing_output_needs_force_and_force_replaces_only_packages(tmp_path):
    source = MODELS / "lenet5" / "model.onnx"
    package(source, tmp_path / "pkg")
    first = read_manifest(tmp_path / "pkg")
    result = run("package", source, "-o", tmp_path / "pkg")
    assert result.exit_code == 1 and "exists; pass --force" in result.output
    package(source, tmp_path / "pkg", PackageOptions(format="ort", force=True))
    assert read_manifest(tmp_path / "pkg").kind == "ort" and first.kind == "bundle"
    assert not (tmp_path / "pkg" / "model.onnx").exists()  # replaced whole, not merged

    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a package, which is all --force replaces"):
        package(source, other, PackageOptions(force=True))
    assert (other / "keep.txt").read_text() == "mine"


def test_a_failure_midway_leaves_no_half_folder(tmp_path, monkeypatch):
    import edgenn.package as package_module

    source = MODELS / "lenet5" / "model.onnx"
    package(source, tmp_path / "pkg")
    before = (tmp_path / "pkg" / MANIFEST_FILE).read_bytes()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(package_module, "_manifest", interrupted)
    for target, force in ((tmp_path / "new", False), (tmp_path / "pkg", True)):
        with pytest.raises(KeyboardInterrupt):
            package(source, target, PackageOptions(format="ort", force=force))
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "pkg" / MANIFEST_FILE).read_bytes() == before  # the old package stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no staging folder left


def test_a_killed_package_leaves_nothing_at_out_and_the_next_run_clears_its_staging(tmp_path):
    import os
    import signal
    import sys
    import time

    code = (
        "import time, edgenn.package as p\n"
        "real = p._golden_cases\n"
        "def slow(*a, **k):\n"
        "    print('staged', flush=True); time.sleep(60)\n"
        "p._golden_cases = slow\n"
        f"p.package({str(MODELS / 'lenet5' / 'model.onnx')!r}, {str(tmp_path / 'pkg')!r})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "staged"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert not (tmp_path / "pkg").exists() and len(left) == 1 and left[0].startswith(".pkg.edgenn-staging-")
    time.sleep(0.1)
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]

    # killed between moving the old package aside and renaming the new one in: the old one comes back
    aside = tmp_path / f".pkg.{temp_tag('old', child.pid)}-x1"  # the killed process's pid: gone
    aside.mkdir()
    (tmp_path / "pkg").rename(aside / "pkg")
    result = run("package", MODELS / "lenet5" / "model.onnx", "-o", tmp_path / "pkg")
    assert result.exit_code == 1 and "exists; pass --force" in result.output  # the old package is back
    assert read_manifest(tmp_path / "pkg").kind == "bundle" and not aside.exists()


def test_package_cli_json_and_table(tmp_path):
    result = run("package", MODELS / "gru" / "model.onnx", "--format", "ort", "-o", tmp_path / "pkg", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kind"] == "ort" and data["verify"]["passed"] is True
    sizes = {f["path"]: f["bytes"] for f in data["files"]}
    assert sizes["model.ort"] == (tmp_path / "pkg" / "model.ort").stat().st_size
    table = run("verify", tmp_path / "pkg").output
    assert "model.ort as ORT format" in table and table.strip().endswith("verified")


# ---------------------------------------------------------------------------- other clients
def test_verify_needs_only_the_runtime_install(tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg", PackageOptions(format="ort"))
    done = _script({"click", "torch", "onnx", "onnxscript", "sklearn"}, ["verify", str(tmp_path / "pkg")])
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    _flip(tmp_path / "pkg" / "model.ort")
    done = _script({"click", "torch", "onnx", "onnxscript", "sklearn"}, ["verify", str(tmp_path / "pkg")])
    assert done.returncode == 3 and "model.ort: changed since packaging" in done.stderr


def test_a_triton_package_without_tritonclient_says_what_to_install(tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "repo", PackageOptions(format="triton"))
    done = _script({"click", "torch", "tritonclient"}, ["verify", str(tmp_path / "repo")])
    assert done.returncode == 3
    assert "pip install tritonclient" in done.stdout + done.stderr


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: the Node.js golden check needs Node.js 18 or later"
    if not (ROOT / "tools" / "node" / "node_modules" / "onnxruntime-node").is_dir():
        return "onnxruntime-node is not installed: npm ci --prefix tools/node"
    return None


@pytest.mark.skipif(_node_ready() is not None, reason=_node_ready() or "")
@pytest.mark.parametrize("fmt", ["bundle", "ort", "triton"])
def test_golden_vectors_run_in_nodejs(fmt, two_inputs, tmp_path):
    source = two_inputs if fmt == "bundle" else MODELS / "lenet5" / "model.onnx"
    package(source, tmp_path / "pkg", PackageOptions(format=fmt))
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), str(tmp_path / "pkg"), "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["passed"] and len(data["results"]) == sum(
        len(c.outputs) for c in read_manifest(tmp_path / "pkg").golden
    )
    _flip(tmp_path / "pkg" / read_manifest(tmp_path / "pkg").model)
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), str(tmp_path / "pkg")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "changed since packaging" in done.stderr


@pytest.mark.skipif(_node_ready() is not None, reason=_node_ready() or "")
def test_nodejs_runs_a_deployments_routes(tmp_path):
    package(MODELS / "simple_cnn" / "deploy", tmp_path / "pkg")
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), str(tmp_path / "pkg"), "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = {Path(r["file"]).name for r in json.loads(done.stdout)["results"]}
    deploy = json.loads((MODELS / "simple_cnn" / "deploy" / "deploy.json").read_text())
    chosen = {c["id"]: c["file"] for c in deploy["candidates"]}
    assert files == {chosen[r["choice"]] for r in deploy["profiles"][0]["routes"]}


def test_options_are_checked(tmp_path):
    source = MODELS / "lenet5" / "model.onnx"
    for options, match in (
        (PackageOptions(format="zip"), "unknown package format"),
        (PackageOptions(ort_style="later"), "unknown ORT optimisation style"),
        (PackageOptions(name="../x"), "Triton model name"),
        (PackageOptions(format="triton", name="manifest.json"), "not manifest.json or golden"),
        (PackageOptions(format="triton", name="golden.0.out.0.npy"), "not manifest.json or golden"),
        (PackageOptions(input_specs=(TensorSpec.parse("nosuch:1x2"),)), "has no input 'nosuch'"),
        (PackageOptions(input_specs=(TensorSpec.parse("input:1x2"),)), "input 'input' has 4 dims"),
    ):
        with pytest.raises(EdgennError, match=match):
            package(source, tmp_path / "x", options)
    assert not (tmp_path / "x").exists()
    result = run("package", source, "-o", tmp_path / "x", "--name", "lenet")
    assert result.exit_code == 2 and "--name is for --format triton" in result.output
    result = run("package", source, "-o", tmp_path / "x", "--format", "triton", "--ort-style", "runtime")
    assert result.exit_code == 2 and "--ort-style is for --format ort" in result.output


def test_packaging_twice_writes_the_same_files(tmp_path):
    for folder in ("a", "b"):
        package(MODELS / "lenet5" / "model.quant.onnx", tmp_path / folder, PackageOptions(format="ort"))
    a, b = (dict(read_manifest(tmp_path / f).files) for f in ("a", "b"))
    # onnxruntime's converter orders some flatbuffer tables differently from one process to the next:
    # the same graph, not the same bytes; everything edgenn writes is the same
    assert {k: v for k, v in a.items() if k != "model.ort"} == {k: v for k, v in b.items() if k != "model.ort"}
    assert "/tmp" not in (tmp_path / "a" / "required_operators.config").read_text()
    assert verify_package(tmp_path / "b").passed


def test_verify_notes_a_fixed_ort_file_made_on_another_cpu(tmp_path):
    package(MODELS / "lenet5" / "model.onnx", tmp_path / "pkg", PackageOptions(format="ort"))

    def elsewhere(data):
        data["machine"]["cpu_model"] = "Intel Xeon Platinum"
        data["machine"]["libraries"]["onnxruntime"] = "1.30.0"

    _rewrite_manifest(tmp_path / "pkg", elsewhere)
    report = verify_package(tmp_path / "pkg")
    assert report.passed  # the golden cases decide; the notes say what differs
    assert any("made on Intel Xeon Platinum, and this CPU is" in n for n in report.notes)
    assert any("written by onnxruntime 1.30.0" in n for n in report.notes)


def test_triton_config_for_a_gpu_candidate_parses_and_fits():
    from edgenn.runtime import triton

    spec_in = TensorSpec("input", ("batch", 1, 8, 8))
    spec_out = TensorSpec("output", ("batch", 10))
    config = triton.model_config("m", [spec_in], [spec_out], 16, instances=2, accelerator="tensorrt", gpu=True)
    parsed = triton.parse_config(triton.config_text(config))
    pb = triton_schema()
    assert parsed.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert [a.name for a in parsed.optimization.execution_accelerators.gpu_execution_accelerator] == ["tensorrt"]
    assert triton.check_config(parsed, [spec_in], [spec_out]) == []
    wrong = TensorSpec("output", ("batch", 11))
    assert triton.check_config(parsed, [spec_in], [wrong]) == ["output 'output' has dims [10], the model's are [11]"]
    with pytest.raises(triton.TritonConfigError, match="does not parse as a Triton model config"):
        triton.parse_config('name: "m" max_batch_size: "many"')
