"""edgenn bench --profile and edgenn.profile (issue 14): per-node time, shares, and attribution.

No test asserts a speed on its own: the slow node is built to be hundreds of times the work of every
other node, so that the attribution cannot be wrong whatever the machine's noise.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgenn.cli import cli
from edgenn.export import ExportOptions, export_source
from edgenn.profile import attribute, profile_model
from edgenn.quantize import QuantizeOptions, quantize
from edgenn.runtime import providers as provider_table
from edgenn.runtime.session import SessionConfig

MODELS = Path(__file__).resolve().parent.parent / "models"
WIDTH = 256


def one_slow_node(path: Path, heavy_columns: int) -> Path:
    """x -> Relu -> MatMul (WIDTH x heavy_columns: the slow node) -> Relu -> ReduceMean."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((WIDTH, heavy_columns)).astype(np.float32), "heavy_weight")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="first_relu"),
        helper.make_node("MatMul", ["a", "heavy_weight"], ["b"], name="heavy_matmul"),
        helper.make_node("Relu", ["b"], ["c"], name="second_relu"),
        helper.make_node("ReduceMean", ["c"], ["y"], name="mean", keepdims=0, axes=[1]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def feeds(batch: int = 32) -> dict:
    return {"x": np.random.default_rng(1).standard_normal((batch, WIDTH)).astype(np.float32)}


def test_the_slow_node_is_named_with_its_share(tmp_path):
    slow = one_slow_node(tmp_path / "slow.onnx", 8192)
    profile = profile_model(slow, SessionConfig(threads=1), feeds())
    names = {n.name for n in profile.nodes}
    assert "heavy_matmul" in names and profile.runs == 30 and profile.batch == 32
    slowest = max(profile.nodes, key=lambda n: n.ms)
    assert slowest.name == "heavy_matmul" and slowest.op == "MatMul" and slowest.share > 0.5
    assert profile.by_op()[0][0] == "MatMul"
    assert abs(sum(n.share for n in profile.nodes) - 1.0) < 1e-9
    assert not profile.quantized and profile.shares()["quantize"] == 0.0


def test_attribution_puts_the_difference_on_the_node_that_makes_it(tmp_path):
    fast = one_slow_node(tmp_path / "fast.onnx", 16)
    slow = one_slow_node(tmp_path / "slow.onnx", 8192)
    config = SessionConfig(threads=1)
    attribution = attribute(profile_model(fast, config, feeds()), profile_model(slow, config, feeds()))
    top = attribution.rows[0]
    assert top.what.startswith("heavy_matmul (MatMul) / heavy_matmul (MatMul)")
    assert top.delta_ms > 0 and top.delta_ms > 0.5 * attribution.delta_ms


@pytest.fixture(scope="module")
def lenet_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    fp32 = folder / "lenet5.onnx"
    export_source("lenet5", fp32, MODELS / "lenet5" / "model.safetensors", ExportOptions(parity_batches=(1,)))
    int8 = folder / "lenet5.int8.onnx"
    quantize(fp32, int8, QuantizeOptions(mode="static", samples=64, providers=("cpu",)))
    return fp32, int8


def test_a_static_int8_model_shows_its_conversions_and_float_layers(lenet_pair):
    fp32, int8 = lenet_pair
    x = {"input": np.random.default_rng(0).random((16, 1, 32, 32), dtype=np.float32)}
    base, quant = profile_model(fp32, SessionConfig(threads=1), x), profile_model(int8, SessionConfig(threads=1), x)
    assert quant.quantized and not base.quantized
    kinds = {n.kind for n in quant.nodes}
    assert {"quantize", "compute"} <= kinds
    assert any(n.int8 for n in quant.nodes)  # int8 kernels really ran (their inputs are uint8)
    # the first conv has one input channel: edgenn's static recipes keep it float, and the profile says so
    assert any(n.kind == "float-in-int8" and n.op in ("Conv", "FusedConv") for n in quant.nodes)
    attribution = attribute(base, quant)
    only_int8 = [r for r in attribution.rows if "only in the candidate" in r.what and "QuantizeLinear" in r.what]
    assert only_int8 and "int8" in only_int8[0].explanation
    maxpools = [r for r in attribution.rows if "(MaxPool) /" in r.what or "(NhwcMaxPool) /" in r.what]
    assert len(maxpools) == 2  # both pools paired with their float forms


def test_bench_profile_in_the_cli(lenet_pair, tmp_path):
    fp32, int8 = lenet_pair
    args = [str(fp32), str(int8), "--provider", "cpu", "--batch", "8", "--runs", "20", "--rounds", "2", "--profile"]
    result = CliRunner().invoke(cli, ["bench", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["options"]["profile"] is True
    assert [p["model"] for p in data["profiles"]] == ["lenet5", "lenet5.int8"]
    assert data["profiles"][1]["quantized"] and data["profiles"][1]["shares"]["quantize"] > 0
    (attribution,) = data["attributions"]
    assert attribution["baseline"] == "lenet5" and attribution["candidate"] == "lenet5.int8"
    text = CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False).output
    assert "profile: lenet5.int8 on cpu, batch 8" in text and "lenet5.int8 against lenet5 on cpu, batch 8" in text


@pytest.mark.skipif(
    provider_table.unavailable_reason("openvino") is not None, reason="the OpenVINO provider is not usable here"
)
def test_openvino_profile_says_what_it_can_see(lenet_pair):
    fp32, _ = lenet_pair
    x = {"input": np.zeros((4, 1, 32, 32), np.float32)}
    profile = profile_model(fp32, SessionConfig(provider="openvino", threads=1), x)
    if importlib.util.find_spec("openvino") is None:
        assert profile.source == "onnxruntime profiler"
        assert any("per-layer counters need the openvino package" in n for n in profile.notes)
    else:
        assert profile.source == "OpenVINO per-layer counters" and len(profile.nodes) > 3


def test_attribution_of_nodes_below_the_timer_resolution():
    from edgenn.profile import NodeTime, Profile

    def one(op: str, ms: float, types: tuple) -> Profile:
        node = NodeTime("node_linear", op, "compute", ms, 1.0, types, (1, 64))
        return Profile("m", "cpu", 1, 1, 30, "onnxruntime profiler", (node,), op == "QGemm")

    rows = attribute(one("Gemm", 0.004, ("float",)), one("QGemm", 0.0, ("uint8",))).rows
    assert len(rows) == 1 and rows[0].explanation == "" and rows[0].delta_ms == -0.004
