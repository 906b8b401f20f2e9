import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from edgenn import zoo
from edgenn.cli import cli
from edgenn.errors import EdgennError, ExportError, InputError
from edgenn.export import ExportOptions, export, export_source
from edgenn.parity import Tolerance
from edgenn.specs import TensorSpec

TRAINED_ZOO = ["mlp", "lenet5", "simple_cnn", "resnet", "lstm", "gru", "activations"]

USER_MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TwoInTwoOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(6, 3)

        def forward(self, x, y):
            h = self.a(x) + self.b(y)
            return h.relu(), h.sum(-1, keepdim=True)

    def two_in_two_out():
        torch.manual_seed(0)
        return TwoInTwoOut(), (torch.rand(1, 4), torch.rand(1, 6))

    class TokenClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(100, 16)
            self.head = nn.Linear(16, 5)

        def forward(self, ids):
            return self.head(self.embed(ids).mean(1))

    class Eig(nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real

    class WithEig(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(4, 4)
            self.solver = Eig()

        def forward(self, x):
            return self.solver(self.encoder(x))

    def with_eig():
        return WithEig(), torch.rand(2, 4, 4)

    class DataDependent(nn.Module):
        # torch.export refuses the branch; tracing freezes it: only validation can tell
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    def data_dependent():
        return DataDependent(), torch.ones(2, 4)

    def broken():
        return nn.Linear(3, 2), torch.rand(2, 5)

    NOT_A_MODULE = 42
    """
)


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "user_models.py"
    path.write_text(USER_MODELS)
    return path


def graph_dims(path, which="input"):
    model = onnx.load(str(path))
    values = model.graph.input if which == "input" else model.graph.output
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]


@pytest.mark.parametrize("name", TRAINED_ZOO)
def test_every_zoo_model_passes_parity_at_1_7_64(name, exported):
    path = exported(name)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    summary = json.loads(props["edgenn.validation"])
    assert summary["passed"]
    batches = [c["case"] for c in summary["cases"]]
    assert batches[:3] == ["batch 1", "batch 7", "batch 64"]
    assert all(c["max_abs_error"] < 1e-3 for c in summary["cases"])
    assert all(c["argmax_agreement"] == 1.0 for c in summary["cases"])
    assert graph_dims(path)[0][0] == "batch"


def test_exported_model_matches_eager_on_real_digits_independently(trained, exported, digits):
    """Parity recomputed here, outside edgenn's validator: a fresh session against eager torch."""
    from edgenn.sources import load_source

    model = load_source("lenet5", trained("lenet5")).module
    x = digits.test.inputs(zoo.entry("lenet5").preprocessing)[:64]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(exported("lenet5")), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
    assert (got.argmax(1) == digits.test.labels[:64]).mean() > 0.95


def test_metadata_and_self_contained_file(exported):
    path = exported("lenet5")
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["edgenn.source"] == "lenet5"
    assert json.loads(props["edgenn.labels"]) == [str(d) for d in range(10)]
    assert json.loads(props["edgenn.preprocessing"])["size"] == [32, 32]
    assert json.loads(props["edgenn.inputs"]) == [{"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32"}]
    assert float(props["edgenn.test_accuracy"]) > 0.97
    assert "torch" in json.loads(props["edgenn.library_versions"])
    assert "lenet5" in model.doc_string and "worst max abs error" in model.doc_string
    assert not list(path.parent.glob("*.data")), "weights must live inside the .onnx"
    assert path.stat().st_size > 200_000  # LeNet-5's 61k float weights are in the file
    # stack traces stripped: each node keeps only the path of the module that made it (compare --layerwise)
    assert {p.key for n in model.graph.node for p in n.metadata_props} == {"edgenn.module"}
    assert b"pkg.torch.onnx" not in path.read_bytes()


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_models_keep_batch_and_sequence_dynamic(name, exported):
    path = exported(name)
    assert graph_dims(path)[0] == ["batch", "sequence", 8]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 8, 8), (5, 3, 8), (33, 20, 8)]:
        assert session.run(None, {"input": np.random.rand(*shape).astype(np.float32)})[0].shape == (shape[0], 10)


def test_two_inputs_two_outputs_from_a_file_outside_the_package(user_file, tmp_path):
    result = export_source(f"{user_file}:two_in_two_out", tmp_path / "two.onnx").raise_for_failure()
    assert [s.name for s in result.inputs] == ["x", "y"]  # forward's parameters
    assert [s.name for s in result.outputs] == ["output_0", "output_1"]
    assert graph_dims(tmp_path / "two.onnx", "output") == [["batch", 3], ["batch", 1]]
    assert all(len(p.outputs) == 2 and p.passed for _, p in result.validation.parity)


def test_int64_token_ids(user_file, tmp_path):
    spec = TensorSpec.parse("ids:1x16:int64")
    result = export_source(f"{user_file}:TokenClassifier", tmp_path / "tok.onnx", input_specs=(spec,))
    assert result.raise_for_failure().inputs == (TensorSpec("ids", ("batch", 16), "int64"),)
    session = ort.InferenceSession(str(tmp_path / "tok.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"
    ids = np.random.default_rng(0).integers(0, 100, (3, 16))
    assert session.run(None, {"ids": ids})[0].shape == (3, 5)


def test_python_api_with_a_module_and_examples(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    result = export(module, torch.rand(1, 2, 10), tmp_path / "conv1d.onnx").raise_for_failure()
    assert result.exporter == "dynamo"
    assert result.inputs[0].shape == ("batch", 2, 10)
    assert {label for label, _ in result.validation.parity} == {"batch 1", "batch 7", "batch 64", "your example inputs"}


def test_static_batch_is_pinned_and_reported(tmp_path):
    result = export_source(
        "lenet5", tmp_path / "static.onnx", random_weights=True, options=ExportOptions(dynamic_batch=False)
    )
    assert result.raise_for_failure().inputs[0].shape == (1, 1, 32, 32)
    assert graph_dims(tmp_path / "static.onnx")[0] == [1, 1, 32, 32]
    assert any("batch 7" in s for s in result.validation.skipped)


def test_opset_written_is_read_back(tmp_path):
    result = export_source("mlp", tmp_path / "m.onnx", random_weights=True, options=ExportOptions(opset=17))
    written = next(o.version for o in onnx.load(str(tmp_path / "m.onnx")).opset_import if o.domain == "")
    assert result.opset == written
    if written != 17:
        assert "asked for opset 17" in result.exporter_note


def test_torchscript_exporter_by_choice(tmp_path):
    result = export_source(
        "gru", tmp_path / "g.onnx", random_weights=True, options=ExportOptions(exporter="torchscript")
    )
    assert result.raise_for_failure().exporter == "torchscript"
    assert "as asked" in result.exporter_note


def test_fallback_is_explained_and_validation_catches_a_wrong_trace(user_file, tmp_path):
    target = tmp_path / "dd.onnx"
    result = export_source(f"{user_file}:data_dependent", target, options=ExportOptions(allow_trace_warnings=True))
    assert result.exporter == "torchscript"
    assert "dynamo exporter failed" in result.exporter_note
    assert not result.passed and result.path is None
    assert not target.exists() and not list(tmp_path.iterdir())
    kept = export_source(
        f"{user_file}:data_dependent", target, options=ExportOptions(keep_invalid=True, allow_trace_warnings=True)
    )
    assert kept.path == target and target.exists()


# --------------------------------------------------------------------------------- bad input
@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(cli, [str(a) for a in args])
        assert "Traceback" not in result.output
        return result

    return invoke


def only_error_line(result):
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    "source,extra,message",
    [
        ("missing.py:build", [], "file 'missing.py' not found"),
        ("{user}:nope", [], "has no attribute 'nope'; it defines:"),
        ("{user}:NOT_A_MODULE", [], "is a int, not an nn.Module"),
        ("{user}:broken", [], "the module's forward raised on the example input (input: 2x5 float32)"),
        (
            "{user}:with_eig",
            [],
            "operator aten.linalg_eig cannot be expressed in ONNX (used in submodule 'solver' (Eig))",
        ),
        ("{user}:TokenClassifier", ["--input", "ids:1x16:int46"], "unknown dtype 'int46'"),
        ("{user}:TokenClassifier", ["--input", "ids;1x16"], "bad input spec"),
        ("{user}:TokenClassifier", [], "give --input NAME:DIMS:DTYPE"),
        ("lenet", [], "unknown model 'lenet'; valid names:"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_file(run, user_file, tmp_path, source, extra, message):
    result = run("export", source.format(user=user_file), "-o", tmp_path / "out.onnx", *extra)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "out.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.onnx")]


def test_missing_output_folder(run, tmp_path):
    result = run("export", "mlp", "--random-weights", "-o", tmp_path / "nowhere" / "m.onnx")
    assert result.exit_code == 1
    assert "output folder" in only_error_line(result) and "does not exist" in result.output


def test_validation_failure_exits_non_zero_without_file(run, trained, tmp_path):
    target = tmp_path / "strict.onnx"
    result = run("export", "lenet5", "--weights", trained("lenet5"), "-o", target, "--atol", "0", "--rtol", "0")
    assert result.exit_code == 3  # a check did not pass (1 is an error, 2 a bad command line)
    assert "validation failed: parity at batch" in only_error_line(result)
    assert not target.exists()


def test_cli_report_json_and_table(run, trained, tmp_path):
    report = tmp_path / "report.json"
    result = run("export", "gru", "--weights", trained("gru"), "-o", tmp_path / "gru.onnx", "--report", report)
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "batch 64, sequence 15" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] and data["exporter"] == "dynamo"
    assert data["validation"]["dynamic_dims"] == {"input": ["batch", "sequence"]}
    stages = [s["name"] for s in data["validation"]["stages"]]
    assert stages == ["onnx.checker", "shape inference", "dynamic dims", "onnxruntime session", "parity"]
    out = data["validation"]["parity"][0]["outputs"][0]
    assert {"max_abs_error", "max_rel_error", "mismatch_fraction", "argmax_agreement"} <= set(out)


def test_exporter_noise_is_hidden(run, tmp_path):
    result = run("export", "mlp", "--random-weights", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0
    assert "[torch.onnx]" not in result.output and "torchvision" not in result.output


def test_weights_for_the_wrong_model_are_refused(run, trained, tmp_path):
    result = run("export", "gru", "--weights", trained("lstm"), "-o", tmp_path / "g.onnx")
    assert result.exit_code == 1 and "holds weights for 'lstm', not 'gru'" in result.output


def test_api_errors_are_edgenn_errors(tmp_path):
    with pytest.raises(InputError):
        TensorSpec.parse("x:1x:float32")
    with pytest.raises(ExportError, match="does not exist"):
        export(torch.nn.Linear(2, 2), torch.rand(1, 2), tmp_path / "no" / "x.onnx")
    with pytest.raises(EdgennError, match="unknown exporter"):
        export(torch.nn.Linear(2, 2), torch.rand(1, 2), tmp_path / "x.onnx", options=ExportOptions(exporter="tf"))
    assert Tolerance().atol == 1e-4 and Tolerance().rtol == 1e-3


PINNED = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Pinned(nn.Module):
        def forward(self, x):
            # int() makes the traced reshape a constant: the batch is pinned at the export batch
            return x.reshape(int(x.shape[0]) * 3, 2) * 2

    def pinned():
        return Pinned(), torch.randn(2, 6)
    """
)


def test_a_run_that_fails_during_parity_is_a_reported_failure(tmp_path):
    source = tmp_path / "pinned.py"
    source.write_text(PINNED)
    options = ExportOptions(exporter="torchscript", keep_invalid=True, allow_trace_warnings=True)
    result = export_source(f"{source}:pinned", tmp_path / "p.onnx", options=options)
    assert not result.passed
    parity = [s for s in result.validation.stages if s.name == "parity"][0]
    assert not parity.passed and "failed at batch" in parity.detail
    assert result.path == tmp_path / "p.onnx" and result.path.exists()  # kept, as asked


def test_outputs_never_overwrite_what_the_command_reads(run, user_file, trained, tmp_path):
    copy = tmp_path / "models.py"
    copy.write_text(USER_MODELS)
    result = run("export", f"{copy}:two_in_two_out", "-o", copy)
    assert result.exit_code == 1 and "is also the source file" in result.output
    assert copy.read_text() == USER_MODELS
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(trained("mlp").read_bytes())
    result = run("export", "mlp", "--random-weights", "--weights", weights, "-o", weights)
    assert result.exit_code == 1 and "is also the weights file" in result.output
    assert weights.read_bytes() == trained("mlp").read_bytes()
    result = run("export", "mlp", "--random-weights", "-o", tmp_path / "m.onnx", "--report", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "is also the --json-out file" in result.output
    result = run(
        "export", "mlp", "--random-weights", "-o", tmp_path / "m.onnx", "--report", tmp_path / "nowhere" / "r.json"
    )
    assert result.exit_code == 1 and not (tmp_path / "m.onnx").exists()
    (tmp_path / "folder.onnx").mkdir()
    result = run("export", "mlp", "--random-weights", "-o", tmp_path / "folder.onnx")
    assert result.exit_code == 2 and "is a directory" in result.output
    with pytest.raises(EdgennError, match="is a folder; give a file path"):
        export(torch.nn.Linear(2, 2), torch.rand(1, 2), tmp_path / "folder.onnx")


def test_zoo_inputs_may_be_renamed_not_reshaped(run, tmp_path):
    result = run("export", "mlp", "--random-weights", "--input", "input:1x10", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "does not fit" in result.output
    renamed = export_source(
        "mlp", tmp_path / "r.onnx", random_weights=True, input_specs=(TensorSpec.parse("pixels:1x64"),)
    )
    assert renamed.raise_for_failure().inputs == (TensorSpec("pixels", ("batch", 64), "float32"),)


def test_duplicate_input_names_and_odd_batch_names(run, user_file, tmp_path):
    result = run(
        "export", f"{user_file}:TwoInTwoOut", "--input", "x:1x4", "--input", "x:1x6", "-o", tmp_path / "d.onnx"
    )
    assert result.exit_code == 2 and "input names must be unique" in result.output
    result = run(
        "export", f"{user_file}:TokenClassifier", "--input", "ids:1x99999999999999999999:int64", "-o", "t.onnx"
    )
    assert result.exit_code == 2 and "between 1 and 2**31-1" in result.output
    named = export_source(
        f"{user_file}:TokenClassifier", tmp_path / "n.onnx", input_specs=(TensorSpec.parse("ids:Nx16:int64"),)
    )
    assert named.raise_for_failure().inputs[0].shape == ("batch", 16)  # the first dim is the batch, whatever its name
