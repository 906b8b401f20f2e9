"""A user's own model, end to end: names kept, any shapes, any task, one consistent CLI (issue 13).

The models are tests/user_models.py, written as a user would, with no knowledge of edgenn.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgenn.cli import cli
from edgenn.errors import EdgennError, ExportError, InputError
from edgenn.export import ExportOptions, export_source
from edgenn.quantize import QuantizeOptions, quantize
from edgenn.runtime import Model
from edgenn.specs import Preprocessing, TensorSpec

USER = Path(__file__).with_name("user_models.py")
ONE_BATCH = ExportOptions(parity_batches=(1, 3))


def run(*args: str) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def io_names(path: Path) -> tuple[list[str], list[str]]:
    session = ort.InferenceSession(str(path))
    return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("two") / "two.onnx"
    export_source(f"{USER}:two_inputs", path, options=ONE_BATCH).raise_for_failure()
    return path


# ------------------------------------------------------------------------------------------ names
def test_dict_inputs_and_outputs_keep_the_users_names(two_inputs):
    assert io_names(two_inputs) == (["image", "features"], ["logits", "score"])


def test_named_tuple_outputs_and_list_inputs_are_named(tmp_path):
    export_source(f"{USER}:regressor", tmp_path / "r.onnx", options=ONE_BATCH).raise_for_failure()
    assert io_names(tmp_path / "r.onnx") == (["features"], ["value", "uncertainty"])
    export_source(f"{USER}:list_input", tmp_path / "l.onnx", options=ONE_BATCH).raise_for_failure()
    assert io_names(tmp_path / "l.onnx") == (["parts_0", "parts_1", "scale"], ["output"])
    # the flattened list reaches forward as a list: the file computes what the module computes
    import torch
    import user_models

    module, (parts, scale) = user_models.list_input()
    expected = module(parts, scale).detach().numpy()
    got = Model(tmp_path / "l.onnx").predict(
        {"parts_0": parts[0].numpy(), "parts_1": parts[1].numpy(), "scale": scale.numpy()}
    )["output"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert torch.is_tensor(parts[0])


def test_forward_signature_names_the_inputs_and_output_flags_rename(tmp_path):
    result = run(
        "export",
        f"{USER}:picture_classifier",
        "--input",
        "image:1x3x64x64",
        "--output",
        "class_scores",
        "--batch",
        "1,2",
        "-o",
        tmp_path / "c.onnx",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert io_names(tmp_path / "c.onnx") == (["image"], ["class_scores"])
    wrong = run("export", f"{USER}:two_inputs", "--output", "only_one", "-o", tmp_path / "w.onnx")
    assert wrong.exit_code == 1 and "2 outputs" in wrong.output and not (tmp_path / "w.onnx").exists()


def test_a_factory_without_examples_names_forwards_parameters_in_its_error():
    with pytest.raises(InputError, match=r"forward takes image.*--input image:"):
        export_source(f"{USER}:picture_classifier", "/tmp/never.onnx")


# ----------------------------------------------------------------------------------------- shapes
def test_dims_with_an_x_in_their_name_parse():
    assert TensorSpec.parse("ids:1xmax_len:int64").shape == (1, "max_len")
    assert TensorSpec.parse("ids:1,maxlen:int64").shape == (1, "maxlen")
    assert TensorSpec.parse("x:batchx3x224x224").shape == ("batch", 3, 224, 224)
    spec = TensorSpec.parse("ids:1,maxlen:int64")
    assert TensorSpec.parse(str(spec)) == spec  # what is printed parses back


def test_unet_needs_dim_and_says_so_then_exports_at_the_chosen_sizes(tmp_path):
    target = tmp_path / "unet.onnx"
    refused = run("export", f"{USER}:unet", "--input", "image:1x3xHxW", "-o", target)
    assert refused.exit_code == 1
    assert "--dim H=" in refused.output and "Traceback" not in refused.output and not target.exists()
    done = run(
        "export",
        f"{USER}:unet",
        "--input",
        "image:1x3xHxW",
        "--dim",
        "H=32,48",
        "--dim",
        "W=32,64",
        "--batch",
        "1,2",
        "-o",
        target,
        "--json",
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    cases = [c["case"] for c in report["validation"]["parity"]]
    assert "batch 2, H 48, W 64" in cases
    assert json.loads(Model(target).metadata["edgenn.dim_sizes"]) == {"H": 32, "W": 32}
    out = Model(target).predict(np.zeros((1, 3, 80, 96), np.float32))["output"]
    assert out.shape == (1, 1, 80, 96)


def test_a_text_model_with_a_named_length(tmp_path):
    target = tmp_path / "text.onnx"
    result = export_source(
        f"{USER}:text_model", target, input_specs=(TensorSpec.parse("ids:1xmax_len:int64"),), options=ONE_BATCH
    ).raise_for_failure()
    assert result.inputs[0].shape == ("batch", "max_len")
    assert any("max_len 23" in label for label, _ in result.validation.parity)  # 12 from the examples, then 2n-1


# ---------------------------------------------------------------------------------- silent wrongs
def test_data_dependent_branch_is_refused_naming_the_users_line(tmp_path):
    target = tmp_path / "b.onnx"
    with pytest.raises(ExportError, match=r"user_models\.py:\d+ \(if x\.mean\(\) > 0:\)"):
        export_source(f"{USER}:branchy", target)
    assert not target.exists()
    result = run("export", f"{USER}:branchy", "-o", target)
    assert result.exit_code == 1 and "--allow-trace-warnings" in result.output


def test_parity_batches_are_seeded_apart_so_a_frozen_branch_shows(tmp_path):
    # allowed through, the frozen branch must fail parity: every random batch is new data
    options = ExportOptions(exporter="torchscript", allow_trace_warnings=True)
    result = export_source(f"{USER}:branchy", tmp_path / "b.onnx", options=options)
    assert "allowed by --allow-trace-warnings" in result.exporter_note
    assert not result.passed


def test_a_zoo_model_without_weights_is_refused_unless_asked(tmp_path):
    with pytest.raises(EdgennError, match="--random-weights"):
        export_source("mlp", tmp_path / "m.onnx")
    result = run("export", "mlp", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and not (tmp_path / "m.onnx").exists()
    done = run("export", "mlp", "--random-weights", "--batch", "1", "-o", tmp_path / "m.onnx")
    assert done.exit_code == 0, done.output
    assert "random" in Model(tmp_path / "m.onnx").metadata["edgenn.weights"]


# ---------------------------------------------------------------------------------------- quantize
def test_quantize_without_labels_or_data_reports_output_error(two_inputs, tmp_path):
    result = quantize(two_inputs, tmp_path / "q.onnx", QuantizeOptions(mode="dynamic"))
    e = result.evaluation
    assert e.fp32_accuracy is None and e.drop_points is None
    assert "random inputs" in e.data
    assert 0 < e.output_error < 0.1 and e.sqnr_db > 20 and e.cosine > 0.99
    assert e.argmax_agreement is not None  # logits look like class scores
    assert any("no labels" in n for n in result.notes)


def test_quantize_auto_never_ships_a_slower_bigger_file(two_inputs, tmp_path):
    result = quantize(two_inputs, tmp_path / "a.onnx", QuantizeOptions(mode="auto"))
    e = result.evaluation
    faster = max(lat.speedup for lat in e.latency) > 1.0
    assert result.recipe.name == "fp32" or faster or e.size_ratio < 1.0
    assert any("static int8 needs calibration data" in n for n in result.notes)
    tight = run("quantize", two_inputs, "-o", tmp_path / "t.onnx", "--mode", "dynamic", "--max-output-error", "0")
    assert tight.exit_code == 3 and "output error budget" in tight.output


def test_quantize_a_regression_model_with_unlabelled_data(tmp_path):
    export_source(f"{USER}:regressor", tmp_path / "r.onnx", options=ONE_BATCH).raise_for_failure()
    np.savez(tmp_path / "data.npz", features=np.random.default_rng(0).standard_normal((64, 12)).astype(np.float32))
    result = run(
        "quantize",
        tmp_path / "r.onnx",
        "-o",
        tmp_path / "r.q.onnx",
        "--mode",
        "fp16",
        "--eval-data",
        tmp_path / "data.npz",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["evaluation"]
    assert report["fp32_accuracy"] is None and report["argmax_agreement"] is None
    assert report["output_error"] < 0.01 and report["data"].endswith("data.npz")


# ----------------------------------------------------------------------------------------- predict
def test_predict_takes_an_npz_per_input_and_prints_raw_outputs(two_inputs, tmp_path):
    rng = np.random.default_rng(0)
    feeds = {"image": rng.random((3, 1, 16, 16), np.float32), "features": rng.random((3, 5), np.float32)}
    np.savez(tmp_path / "in.npz", **feeds)
    result = run("predict", two_inputs, tmp_path / "in.npz", "--raw", "--json")
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.output)["outputs"]
    expected = Model(two_inputs).predict(feeds)
    assert outputs["score"]["shape"] == [3, 1]
    np.testing.assert_allclose(np.array(outputs["logits"]["values"]), expected["logits"], rtol=1e-6)
    table = run("predict", two_inputs, tmp_path / "in.npz", "--raw")
    assert "logits" in table.output and "3x4" in table.output
    np.savez(tmp_path / "bad.npz", image=feeds["image"])
    missing = run("predict", two_inputs, tmp_path / "bad.npz")
    assert missing.exit_code == 1 and "missing: features" in missing.output


def test_preprocess_metadata_lets_predict_classify_a_colour_picture(tmp_path):
    from PIL import Image

    prep = Preprocessing.parse("size=64x64,mean=0.485,0.456,0.406,std=0.229,0.224,0.225,layout=NCHW,color=rgb")
    target = tmp_path / "pic.onnx"
    export_source(
        f"{USER}:picture_classifier",
        target,
        input_specs=(TensorSpec.parse("image:1x3x64x64"),),
        options=ONE_BATCH,
        preprocessing=prep,
    ).raise_for_failure()
    model = Model(target)
    assert model.preprocessing == prep
    picture = (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "p.png")
    expected = model.predict(model.picture_input(picture))["output"].argmax()
    result = run("predict", target, tmp_path / "p.png", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["predictions"][0][0]["index"] == int(expected)
    with pytest.raises(InputError, match="channel"):
        export_source(
            f"{USER}:picture_classifier",
            tmp_path / "x.onnx",
            input_specs=(TensorSpec.parse("image:1x3x64x64"),),
            preprocessing=Preprocessing.parse("size=64x64,color=grey"),
        )


# ------------------------------------------------------------------------------------ inspect, bench
def test_inspect_shows_names_dims_ops_and_loads(two_inputs):
    result = run("inspect", two_inputs, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [i["name"] for i in found["inputs"]] == ["image", "features"]
    assert found["inputs"][0]["shape"][0] == "batch"
    assert found["op_counts"]["Conv"] == 1 and found["parameters"] > 0
    cpu = next(p for p in found["providers"] if p["provider"] == "cpu")
    assert cpu["loads"] is True and "of 9 nodes" in cpu["detail"]
    assert found["metadata"]["edgenn.source"].endswith("user_models.py:two_inputs")


def test_bench_eager_factory_takes_input_and_refuses_an_unrelated_model(tmp_path):
    target = tmp_path / "c.onnx"
    export_source(
        f"{USER}:picture_classifier", target, input_specs=(TensorSpec.parse("image:1x3x64x64"),), options=ONE_BATCH
    ).raise_for_failure()
    ok = run(
        "bench",
        target,
        "--eager",
        f"{USER}:picture_classifier",
        "--input",
        "image:1x3x64x64",
        "--runs",
        "3",
        "--rounds",
        "3",
        "--warmup",
        "1",
        "--json",
    )
    assert ok.exit_code == 0, ok.output
    assert {v["kind"] for v in json.loads(ok.output)["variants"]} == {"onnx", "eager"}
    wrong = run("bench", target, "--eager", "lenet5", "--runs", "3", "--rounds", "3", "--json")
    assert wrong.exit_code == 1
    assert "must be the model the .onnx was exported from" in json.loads(wrong.output)["error"]


# --------------------------------------------------------------------------------------------- CLI
def test_errors_under_json_are_json_and_exit_codes_say_what_failed(tmp_path):
    missing = run("predict", tmp_path / "none.onnx", tmp_path / "x.npy", "--json")
    assert missing.exit_code == 1 and json.loads(missing.output)["error"].startswith("model file")
    usage = run("export", "mlp", "--batch", "0", "-o", tmp_path / "m.onnx", "--json")
    assert usage.exit_code == 2 and "positive" in json.loads(usage.output)["error"]


def test_every_command_help_ends_with_examples():
    for command in (
        "export",
        "quantize",
        "bench",
        "predict",
        "inspect",
        "summary",
        "package",
        "verify",
        "serve",
        "score",
    ):
        text = run(command, "--help").output
        assert "Examples:" in text and f"edgenn {command} " in text.split("Examples:")[1], command


def test_summary_takes_a_users_factory():
    result = run("summary", f"{USER}:picture_classifier", "--input", "image:1x3x64x64", "--batch", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total_parameters"] > 0


# ---------------------------------------------------------------------------------- runtime install
BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in {blocked!r} else real(n, *a)
sys.argv = ['edgenn'] + {argv!r}
from edgenn.entry import main
main()
"""


def _script(blocked: set[str], argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=sorted(blocked), argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_only_install_says_what_the_cli_needs_in_one_line():
    done = _script({"click", "torch"}, ["--help"])
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "edgenn[full]" in lines[0]


def test_without_torch_predict_runs_and_export_names_the_extra(two_inputs, tmp_path):
    feeds = {"image": np.zeros((1, 1, 16, 16), np.float32), "features": np.zeros((1, 5), np.float32)}
    np.savez(tmp_path / "in.npz", **feeds)
    predicted = _script({"torch", "onnxscript", "sklearn"}, ["predict", str(two_inputs), str(tmp_path / "in.npz")])
    assert predicted.returncode == 0, predicted.stderr
    assert "logits" in predicted.stdout
    exported = _script({"torch"}, ["export", "mlp", "-o", str(tmp_path / "m.onnx")])
    assert exported.returncode == 1 and "edgenn[full]" in exported.stderr and "Traceback" not in exported.stderr
