"""edgenn compare and --layerwise (issue 14): planted faults are named, local and carried figures, chunking.

Faults are planted in real exports of the committed, trained zoo models; every comparison runs real
onnxruntime sessions (the deployed graph, int8 kernels included) and real eager modules.
"""

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from edgenn import zoo
from edgenn.cli import cli
from edgenn.compare import CompareOptions, compare
from edgenn.errors import EdgennError, InputError, ProviderError
from edgenn.export import ExportOptions, export_source
from edgenn.parity import Tolerance
from edgenn.quantize import QuantizeOptions, quantize
from edgenn.runtime.integrity import unseal
from edgenn.specs import NODE_MODULE

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
USER = Path(__file__).with_name("user_models.py")
QUICK = ExportOptions(parity_batches=(1, 3))


def weights(name: str) -> str:
    return str(MODELS / name / "model.safetensors")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lenet") / "lenet5.onnx"
    export_source("lenet5", path, weights("lenet5"), QUICK).raise_for_failure()
    return path


@pytest.fixture(scope="module")
def lenet_static(lenet) -> Path:
    path = lenet.with_name("lenet5.int8.onnx")
    quantize(lenet, path, QuantizeOptions(mode="static", samples=64, providers=("cpu",)))
    return path


def edited(source: Path, target: Path, change) -> Path:
    """A copy of `source` changed on purpose: its edgenn digest goes (it would refuse the edit at load)."""
    model = unseal(onnx.load(str(source)))
    change(model)
    onnx.save(model, str(target))
    return target


def scale_initializer(name: str, factor: float):
    def change(model):
        for init in model.graph.initializer:
            if init.name == name:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, name))
                return
        raise AssertionError(f"no initializer {name}")

    return change


# ---------------------------------------------------------------------------------- the module map
def test_export_keeps_each_nodes_module_path_and_drops_the_stack_traces(lenet):
    model = onnx.load(str(lenet))
    keys = {p.key for node in model.graph.node for p in node.metadata_props}
    assert keys == {NODE_MODULE}
    modules = {p.value for node in model.graph.node for p in node.metadata_props}
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= modules
    assert modules <= {name for name, _ in zoo.create("lenet5").named_modules()}


# -------------------------------------------------------------------------------- planted faults
def test_a_scaled_conv_in_the_exported_lenet_is_the_first_departure(lenet, tmp_path):
    faulty = edited(lenet, tmp_path / "faulty.onnx", scale_initializer("conv2.weight", 1.5))
    for reference, options in (
        ("lenet5", CompareOptions(weights=weights("lenet5"), layerwise=True)),
        (str(lenet), CompareOptions(layerwise=True)),
    ):
        report = compare(reference, f"{faulty}@cpu", options)
        first = report.layerwise.first_departure
        assert first is not None and first.module == "conv2", report.layerwise.departure_line()
        assert first.local is not None and first.local.relative > 0.3
        before = [la for la in report.layerwise.layers if la.index < first.index]
        assert before and all(la.carried.relative < 1e-4 for la in before)
        # after it the error is carried, not made: each later layer is right on the reference's inputs
        after = [la for la in report.layerwise.layers if la.index > first.index]
        assert all(la.carried.relative > 0.1 and la.local.relative < 1e-4 for la in after)
        assert not report.passed


def test_swapped_batchnorm_channels_in_a_resnet_block_are_named(tmp_path):
    path = tmp_path / "resnet.onnx"
    export_source("resnet", path, weights("resnet"), QUICK).raise_for_failure()
    from edgenn.checkpoint import load_weights

    module = load_weights(zoo.create("resnet"), "resnet", weights("resnet")).eval()
    bn = module.layer2.bn1
    with torch.no_grad():
        for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            tensor[[0, 1]] = tensor[[1, 0]].clone()
    factory = tmp_path / "faulty_resnet.py"
    state = tmp_path / "faulty.pt"
    torch.save(module.state_dict(), state)
    factory.write_text(
        "import torch\nfrom edgenn import zoo\n\n\ndef faulty():\n"
        f"    m = zoo.create('resnet')\n    m.load_state_dict(torch.load({str(state)!r}))\n"
        "    return m.eval(), torch.zeros(1, 1, 32, 32)\n"
    )
    # the faulty module is the reference, so the ONNX candidate's local figures exist
    report = compare(f"{factory}:faulty", f"{path}@cpu", CompareOptions(layerwise=True))
    first = report.layerwise.first_departure
    assert first is not None and first.module == "layer2.bn1", report.layerwise.departure_line()
    assert all(la.carried.relative < 1e-3 for la in report.layerwise.layers if la.index < first.index)
    # the other way round (eager candidate): carried figures only, and the same first departure
    report = compare(f"{path}@cpu", f"{factory}:faulty", CompareOptions(layerwise=True))
    assert report.layerwise.first_departure.module == "layer2.bn1"
    assert not report.layerwise.local_known
    assert any("local figures need an ONNX candidate" in n for n in report.layerwise.notes)


def test_one_layer_quantized_with_a_bad_scale_is_the_first_departure(lenet, lenet_static, tmp_path):
    model = onnx.load(str(lenet_static))
    quantizer = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "relu_1")
    faulty = edited(lenet_static, tmp_path / "bad_scale.onnx", scale_initializer(quantizer.input[1], 0.02))
    report = compare(str(lenet), f"{faulty}@cpu", CompareOptions(layerwise=True))
    first = report.layerwise.first_departure
    assert first is not None and first.tensor == "relu_1" and first.module == "conv2", report.layerwise.departure_line()
    before = [la for la in report.layerwise.layers if la.index < first.index]
    assert before and not any(la.departs for la in before)
    # against eager PyTorch too, matched by module path
    report = compare("lenet5", f"{faulty}@cpu", CompareOptions(weights=weights("lenet5"), layerwise=True))
    assert report.layerwise.first_departure.module == "conv2"


# ------------------------------------------------------------------------------ real comparisons
def test_fp32_against_int8_reads_real_int8_tensors_and_names_a_real_layer(lenet, lenet_static):
    report = compare(str(lenet), f"{lenet_static}@cpu", CompareOptions(layerwise=True))
    lw = report.layerwise
    assert lw.tolerance == 0.1  # int8's default
    assert lw.first_departure is None
    worst = max((la for la in lw.layers if la.carried), key=lambda la: la.carried.relative)
    assert worst.module in {name for name, _ in zoo.create("lenet5").named_modules()}
    # the int8 kernels really ran: the quantized layers differ from fp32 by more than rounding
    assert 1e-3 < worst.carried.relative < 0.1
    assert all(la.carried.sqnr_db > 20 for la in lw.layers)


def test_eager_against_onnx_on_a_users_file_model(tmp_path):
    path = tmp_path / "picture.onnx"
    from edgenn.specs import TensorSpec

    image = (TensorSpec.parse("image:1x3x64x64"),)
    export_source(f"{USER}:picture_classifier", path, input_specs=image, options=QUICK).raise_for_failure()
    report = compare(f"{USER}:picture_classifier", f"{path}@cpu", CompareOptions(layerwise=True, batch=4))
    assert report.passed and report.inputs.startswith("random inputs")
    lw = report.layerwise
    assert lw.matched_by == "module path" and len(lw.layers) >= 3
    assert all(la.carried.relative < 1e-4 for la in lw.layers)
    assert lw.first_departure is None


def test_a_small_chunk_gives_the_same_report(lenet, lenet_static):
    whole = compare(str(lenet), f"{lenet_static}@cpu", CompareOptions(layerwise=True, chunk=64)).layerwise
    pieces = compare(str(lenet), f"{lenet_static}@cpu", CompareOptions(layerwise=True, chunk=1)).layerwise
    assert pieces.chunk == 1 and len(pieces.layers) == len(whole.layers) > 3
    for a, b in zip(whole.to_dict()["layers"], pieces.to_dict()["layers"]):
        assert a == b


# ------------------------------------------------------------------------------------- bad input
def test_sides_with_different_inputs_are_one_line(lenet):
    with pytest.raises(InputError, match="input .input. differs: input:batchx1x32x32:float32 on .*features:batchx12"):
        compare(str(lenet), f"{USER}:regressor", CompareOptions())


def test_an_onnx_file_without_module_map(lenet, tmp_path):
    def strip(model):
        for node in model.graph.node:
            del node.metadata_props[:]

    bare = edited(lenet, tmp_path / "bare.onnx", strip)
    with pytest.raises(EdgennError, match="no module map"):
        compare("lenet5", str(bare), CompareOptions(weights=weights("lenet5"), layerwise=True))
    report = compare(str(bare), str(lenet), CompareOptions(layerwise=True))  # by tensor name, still
    assert report.layerwise.first_departure is None and len(report.layerwise.layers) > 5
    assert any("module paths are unknown" in n for n in report.layerwise.notes)


def test_a_provider_that_cannot_run_a_side_is_one_line(lenet):
    with pytest.raises(ProviderError):
        compare(str(lenet), f"{lenet}@cuda", CompareOptions())


def test_cli_writes_nothing_on_failure_and_reports_json(lenet, tmp_path):
    out, plot = tmp_path / "r.json", tmp_path / "l.png"
    result = run("compare", lenet, "missing.onnx", "--layerwise", "--json-out", out, "--plot", plot)
    assert result.exit_code == 1 and "not found" in result.output and "Traceback" not in result.output
    assert not out.exists() and not plot.exists()
    result = run("compare", "lenet5", lenet, "--weights", weights("lenet5"), "--layerwise", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] and data["layerwise"]["first_departure"] is None
    assert [layer["module"] for layer in data["layerwise"]["layers"]][:2] == ["conv1", "conv2"]


def test_cli_departure_exits_3_with_the_module_named_and_plots(lenet, tmp_path):
    pytest.importorskip("matplotlib")
    faulty = edited(lenet, tmp_path / "faulty.onnx", scale_initializer("conv1.weight", 1.5))
    plot = tmp_path / "layers.png"
    result = run("compare", lenet, faulty, "--layerwise", "--plot", plot)
    assert result.exit_code == 3
    assert "first departs at module 'conv1'" in result.output and "<< departs" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_compare_is_the_per_output_report_for_any_pair(lenet, lenet_static):
    report = compare(str(lenet), f"{lenet_static}@cpu", CompareOptions(batch=16))
    (output,) = report.outputs
    assert report.batch == 16 and report.layerwise is None
    assert output.argmax_agreement is not None and output.argmax_agreement > 0.9
    assert 10 < output.error.sqnr_db < 80 and 0.99 < output.error.cosine <= 1.0
    # int8 against fp32 is judged relative to the output's range (0.1 of it), not by fp32's atol/rtol ...
    assert output.passed and report.tolerance is None and "0.1 of each output's range" in report.criterion
    assert 0 < output.error.relative < 0.1
    # ... unless an elementwise tolerance is asked for, which int8 does not meet
    strict = compare(str(lenet), f"{lenet_static}@cpu", CompareOptions(batch=16, tolerance=Tolerance()))
    assert not strict.outputs[0].passed and not strict.passed
    assert report.to_dict()["outputs"][0]["max_abs"] > 0


def test_a_float16_file_gets_the_half_precision_tolerance(lenet, tmp_path):
    half = tmp_path / "half.onnx"
    quantize(lenet, half, QuantizeOptions(mode="fp16", providers=("cpu",)))
    report = compare(str(lenet), f"{half}@cpu", CompareOptions(layerwise=True))
    assert report.layerwise.tolerance == 0.03 and "f16 against f32" in report.criterion
    assert report.passed


def test_a_failed_export_validation_names_the_first_departing_module(tmp_path):
    # a data-dependent branch, traced with the warning allowed: one branch is frozen into the file
    from edgenn.errors import ValidationError

    options = ExportOptions(exporter="torchscript", allow_trace_warnings=True)
    result = export_source(f"{USER}:branchy", tmp_path / "b.onnx", options=options)
    with pytest.raises(ValidationError, match=r"first departs at the top-level module's own forward .*\(Neg"):
        result.raise_for_failure()
    assert not (tmp_path / "b.onnx").exists()


def test_a_file_against_itself_is_exact_carried_and_local(lenet, lenet_static):
    # the local runs optimise as the carried ones do, and an int8 cut reads back the same int8 values
    for path in (lenet, lenet_static):
        lw = compare(f"{path}@cpu", f"{path}@cpu", CompareOptions(layerwise=True)).layerwise
        assert len(lw.layers) > 5
        assert all(la.carried.max_abs_error == 0 and la.local.max_abs_error == 0 for la in lw.layers), path.name


def test_eager_against_int8_where_the_quantizer_folded_the_relus(lenet_static):
    report = compare("lenet5", f"{lenet_static}@cpu", CompareOptions(weights=weights("lenet5"), layerwise=True))
    lw = report.layerwise
    assert lw.first_departure is None, lw.departure_line()
    folded = {la.module for la in lw.layers if la.op.endswith("+Relu")}
    assert {"conv2", "fc1", "fc2"} <= folded
    assert any("folded the Relu after 'conv2'" in n for n in lw.notes)
    assert all(la.local.relative < 0.05 for la in lw.layers)  # fc3 runs in float: right on fp32's inputs


def test_modules_returning_several_tensors_are_not_matched_to_one(tmp_path):
    path = tmp_path / "regressor.onnx"
    export_source(f"{USER}:regressor", path, options=QUICK).raise_for_failure()
    report = compare(f"{USER}:regressor", f"{path}@cpu", CompareOptions(layerwise=True))
    assert report.passed and report.layerwise.first_departure is None
    assert "" not in {la.module for la in report.layerwise.layers}
    assert any("'(top level)' returns 2 tensors" in n for n in report.layerwise.notes)


def test_dynamic_quantize_keeps_the_module_map(tmp_path):
    fp32, dynamic = tmp_path / "lstm.onnx", tmp_path / "lstm.dyn.onnx"
    export_source("lstm", fp32, weights("lstm"), QUICK).raise_for_failure()
    quantize(fp32, dynamic, QuantizeOptions(mode="dynamic", providers=("cpu",)))
    tagged = [n for n in onnx.load(str(dynamic)).graph.node if any(p.key == NODE_MODULE for p in n.metadata_props)]
    assert {p.value for n in tagged for p in n.metadata_props} >= {"rnn", "fc"}
    report = compare("lstm", f"{dynamic}@cpu", CompareOptions(weights=weights("lstm"), layerwise=True))
    assert "fc" in {la.module for la in report.layerwise.layers}
    # the default batch (7) differs from the sequence length (8): a tensor the rewritten graph holds
    # transposed shows as a shape mismatch, never as a false departure
    assert report.layerwise.first_departure is None


def test_two_different_zoo_models_are_refused_in_one_line(lenet):
    resnet = MODELS / "resnet" / "model.onnx"
    with pytest.raises(InputError, match="is the zoo's lenet5 and model.onnx@cpu its resnet"):
        compare(f"{lenet}@cpu", f"{resnet}@cpu", CompareOptions(layerwise=True))
    with pytest.raises(InputError, match="eager lenet5 is the zoo's lenet5"):
        compare("lenet5", f"{resnet}@cpu", CompareOptions(weights=weights("lenet5")))
    with pytest.raises(InputError, match="names no provider after @"):
        compare(str(lenet), f"{lenet}@", CompareOptions())


def test_a_dict_model_keeps_its_own_module_paths(tmp_path):
    # the wrapper that takes dict inputs flat is not the user's module: no "model." prefix anywhere
    path = tmp_path / "two.onnx"
    export_source(f"{USER}:two_inputs", path, options=QUICK).raise_for_failure()
    modules = {p.value for n in onnx.load(str(path)).graph.node for p in n.metadata_props}
    assert {"conv", "meta"} <= modules and not any(m.startswith("model") for m in modules)
    report = compare(f"{USER}:two_inputs", f"{path}@cpu", CompareOptions(layerwise=True))
    assert {"conv", "meta"} <= {la.module for la in report.layerwise.layers}
    assert report.passed


def test_cli_plot_must_be_a_png(lenet, tmp_path):
    result = run("compare", lenet, lenet, "--layerwise", "--plot", tmp_path / "layers.txt")
    assert result.exit_code == 2 and "--plot writes a PNG" in result.output
    assert not (tmp_path / "layers.txt").exists()
