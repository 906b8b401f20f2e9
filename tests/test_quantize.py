"""edgenn.quantize on trained, exported zoo models: accuracy bounds, sizes, kernels, auto mode, bad input.

Accuracy figures are on the digits test split (360 images, one image = 0.28 points). Timings are
measured (the result always carries them) but never asserted: the machine is shared.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgenn.calibration import LABELS_KEY
from edgenn.cli import cli
from edgenn.errors import EdgennError, InputError, ModelFileError
from edgenn.evaluate import LatencyOptions
from edgenn.quantize import META_QUANTIZATION, PICK_MARGIN, QuantizeOptions, quantize, stable_fastest
from edgenn.specs import META_ACCURACY, META_PREPROCESSING, META_VALIDATION, Preprocessing

# Light timings: the figures are measured in every run, but only tools/quantize_zoo.py reports them.
QUICK = LatencyOptions(rounds=2, repeats=2, warmup=1)
STATIC_BOUND = 0.5  # points: static int8 on the CNNs and the MLP (the bound)
DYNAMIC_BOUND = 1.0  # points: dynamic int8 on the recurrent models
SIZE_BOUND = 0.30  # int8 file / fp32 file, for models whose weights are nearly all of their file


def run(model, out, **options):
    return quantize(model, out, QuantizeOptions(latency=QUICK, **options))


def session_accuracy(path, digits, prep):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: digits.test.inputs(prep)})[0]
    return float(np.mean(scores.argmax(axis=1) == digits.test.labels))


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# ------------------------------------------------------------------------------------ the modes
@pytest.mark.parametrize("name", ["lenet5", "simple_cnn", "mlp"])
def test_static_int8_stays_within_half_a_point(name, exported, tmp_path, digits):
    out = tmp_path / f"{name}.int8.onnx"
    result = run(exported(name), out, mode="static")
    e = result.evaluation
    assert e.drop_points <= STATIC_BOUND
    assert e.kernels.int8_compute >= 1, e.kernels.op_counts  # int8 really runs after onnxruntime's fusions
    assert e.data == "digits test split" and e.samples == len(digits.test)
    # The figure reported is the figure of the file written (measured again, independently).
    prep = Preprocessing.from_dict(json.loads(metadata(out)[META_PREPROCESSING]))
    assert session_accuracy(out, digits, prep) == pytest.approx(e.quantized_accuracy)
    assert e.quantized_bytes == out.stat().st_size
    assert any(k.reason.startswith("output layer") for k in result.kept_float)
    assert result.calibration.startswith("digits train split, 256 samples")
    if name != "mlp":  # the MLP's 6.5k weights do not dominate its file; the CNNs' do
        assert e.size_ratio <= SIZE_BOUND


def test_static_keeps_single_channel_stem_in_float(exported, tmp_path):
    result = run(exported("simple_cnn"), tmp_path / "q.onnx", mode="static", format="qoperator")
    stems = [k for k in result.kept_float if k.op_type == "Conv"]
    assert len(stems) == 1 and stems[0].reason.startswith("1 input channel")
    assert result.recipe.name == "static-qoperator"
    assert result.evaluation.kernels.int8_compute >= 1


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_dynamic_int8_on_recurrent_models_stays_within_one_point(name, exported, tmp_path):
    result = run(exported(name), tmp_path / f"{name}.dyn.onnx", mode="dynamic")
    e = result.evaluation
    assert e.drop_points <= DYNAMIC_BOUND
    ops = dict(e.kernels.op_counts)
    if name == "lstm":
        assert ops.get("DynamicQuantizeLSTM") == 1
        assert e.size_ratio <= 0.4
    else:  # onnxruntime has no int8 GRU: only the output layer is int8, and the report says so
        assert "GRU" in ops
        assert any(k.op_type == "GRU" and "no int8 GRU" in k.reason for k in result.kept_float)
        assert e.kernels.int8_compute == 1


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_fp16_keeps_float32_io_and_names_the_ops_without_fp16_kernels(name, exported, tmp_path):
    out = tmp_path / f"{name}.fp16.onnx"
    result = run(exported(name), out, mode="fp16")
    e = result.evaluation
    assert e.drop_points <= STATIC_BOUND
    assert 0.4 <= e.size_ratio <= 0.6
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(out)).graph.initializer)
    # This CPU provider has no fp16 Gemm: onnxruntime runs it in fp32 behind casts, and the report says which.
    assert "Gemm" in e.kernels.no_fp16_kernel
    assert e.kernels.fp16_candidates >= 3 and e.kernels.fp16_nodes < e.kernels.fp16_candidates
    assert any("no fp16 kernel for" in n and "Gemm" in n for n in result.notes)


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_auto_keeps_the_fastest_recipe_within_the_budget(name, exported, tmp_path):
    result = run(exported(name), tmp_path / "auto.onnx", mode="auto")
    assert result.budget_met and result.selection_data == "digits val split"
    within = [c for c in result.candidates if c.within_budget]
    chosen = [c for c in result.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].within_budget
    # the fastest, or one that only timing noise (under PICK_MARGIN) separates from the fastest
    assert chosen[0].speedup * PICK_MARGIN >= max(c.speedup for c in within)
    assert result.recipe == chosen[0].recipe
    assert {c.recipe.name for c in result.candidates} == {
        "static-qdq",
        "static-qdq-per-tensor",
        "static-qoperator",
        "dynamic",
        "fp16",
    }
    assert result.evaluation.drop_points <= STATIC_BOUND


@pytest.fixture(scope="session")
def dim_calibration(tmp_path_factory, digits):
    """MLP calibration inputs at half the brightness of the real digits: the first layer's ranges come out
    too narrow, so int8 saturates there (about 10 points lost) until that layer is kept in float."""
    path = tmp_path_factory.mktemp("calibration") / "dim.npz"
    np.savez(path, input=(digits.train.inputs(Preprocessing("flat")) * 0.5).astype(np.float32))
    return path


def test_auto_keeps_the_costliest_nodes_in_float_until_the_budget_holds(exported, tmp_path, dim_calibration):
    result = run(
        exported("mlp"),
        tmp_path / "auto.onnx",
        mode="auto",
        calibration=str(dim_calibration),
        auto_recipes=("static-qdq",),
    )
    assert not result.candidates[0].within_budget  # the plain recipe missed the budget ...
    excluded = result.excluded_for_accuracy
    assert len(excluded) >= 1  # ... so nodes were kept in float, most sensitive first (one layerwise walk)
    ranking = result.sensitivity
    assert [k.node for k in excluded] == [s.node for s in ranking[: len(excluded)]]
    assert excluded[0].op_type == "Gemm" and excluded[0].local_error == ranking[0].error > 0
    assert [s.error for s in ranking] == sorted((s.error for s in ranking), reverse=True)
    assert all(s.local_error is not None for s in ranking)  # every quantized Gemm's own error was read
    from edgenn import zoo

    assert {s.module for s in ranking} <= {name for name, _ in zoo.create("mlp").named_modules()}
    assert result.budget_met and excluded[-1].drop_after_points <= 0.5
    assert all(k.drop_after_points > 0.5 for k in excluded[:-1])  # it stopped as soon as the budget held
    assert result.evaluation.drop_points <= 1.0
    kept = json.loads(metadata(tmp_path / "auto.onnx")[META_QUANTIZATION])["kept_float"]
    assert {k.node for k in excluded} <= {k["node"] for k in kept}


def test_an_unreachable_budget_is_reported_and_the_best_model_kept(exported, tmp_path):
    out = tmp_path / "auto.onnx"
    result = run(exported("mlp"), out, mode="auto", max_accuracy_drop=-5.0, auto_recipes=("static-qdq",))
    assert not result.budget_met and out.is_file()
    assert any("not met even with every quantizable node in float" in n for n in result.notes)
    cli_out = tmp_path / "cli.onnx"
    outcome = CliRunner().invoke(
        cli,
        [
            "quantize",
            str(exported("mlp")),
            "-o",
            str(cli_out),
            "--mode",
            "auto",
            "--recipes",
            "static-qdq",
            "--max-accuracy-drop",
            "-5",
        ],
    )
    assert outcome.exit_code == 3 and cli_out.is_file()  # 3: a check did not pass
    assert outcome.output.strip().splitlines()[-1].startswith("Error: accuracy budget of -5 points not met")


# ------------------------------------------------------------------------------ the output file
def test_metadata_is_carried_over_and_the_recipe_added(exported, tmp_path, digits):
    source = exported("mlp")
    out = tmp_path / "q.onnx"
    result = run(source, out, mode="static", per_channel=False, method="entropy", samples=128)
    before, after = metadata(source), metadata(out)
    for key in ("edgenn.source", "edgenn.inputs", "edgenn.labels", META_PREPROCESSING):
        assert after[key] == before[key]
    assert META_VALIDATION not in after  # the export's parity check was for the fp32 model
    assert float(after[META_ACCURACY]) == pytest.approx(result.evaluation.quantized_accuracy, abs=1e-6)
    recipe = json.loads(after[META_QUANTIZATION])
    assert recipe["recipe"] == {
        "name": "static-qdq-per-tensor-entropy",
        "mode": "static",
        "format": "qdq",
        "per_channel": False,
        "method": "entropy",
        "activations": "uint8",
        "weights": "int8",
    }
    assert recipe["calibration"].startswith("digits train split, 128 samples")
    assert recipe["evaluation"]["data"] == "digits test split"
    assert result.to_dict()["recipe"]["name"] == "static-qdq-per-tensor-entropy"


def test_quantization_is_deterministic(exported, tmp_path):
    first = run(exported("mlp"), tmp_path / "a.onnx", mode="static", method="percentile")
    run(exported("mlp"), tmp_path / "b.onnx", mode="static", method="percentile")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert first.evaluation.drop_points <= STATIC_BOUND


def test_user_data_for_calibration_and_evaluation(exported, tmp_path, digits):
    prep = Preprocessing("flat")
    np.savez(tmp_path / "calib.npz", x=digits.train.inputs(prep)[:300])
    np.savez(tmp_path / "eval.npz", input=digits.val.inputs(prep), **{LABELS_KEY: digits.val.labels})
    result = run(
        exported("mlp"),
        tmp_path / "q.onnx",
        mode="static",
        calibration=str(tmp_path / "calib.npz"),
        eval_data=str(tmp_path / "eval.npz"),
    )
    assert result.evaluation.data == str(tmp_path / "eval.npz")
    assert result.evaluation.samples == len(digits.val)
    assert result.calibration.startswith(f"{tmp_path / 'calib.npz'}, 256 samples")
    assert META_ACCURACY not in metadata(tmp_path / "q.onnx")  # the key means digits test accuracy


# ------------------------------------------------------------------------------------ bad input
def assert_nothing_written(folder, name="out.onnx"):
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{name}")]  # no temporary left behind


def test_a_file_that_is_not_onnx(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match="not an ONNX model or is corrupt"):
        run(bogus, tmp_path / "out.onnx")
    assert_nothing_written(tmp_path)


def test_a_truncated_model(exported, tmp_path):
    data = exported("mlp").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt|not a valid ONNX model"):
        run(cut, tmp_path / "out.onnx")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("mode,found", [("static", "QuantizeLinear"), ("fp16", "float16")])
def test_an_already_quantized_model(mode, found, exported, tmp_path):
    first = tmp_path / "first.onnx"
    run(exported("mlp"), first, mode=mode)
    with pytest.raises(EdgennError, match=f"already (quantized|holds).*{found}.*quantize the float32 model"):
        run(first, tmp_path / "out.onnx", mode="dynamic")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "array,match",
    [
        (np.zeros((300, 8, 8), np.float32), r"has shape \(300, 8, 8\), the model takes batchx64"),
        (np.zeros((300, 64), np.float64), "is float64, the model takes float32"),
        (np.zeros((100, 64), np.float32), "has 100 samples, fewer than the 256 asked for"),
    ],
)
def test_calibration_data_that_does_not_fit(array, match, exported, tmp_path):
    np.savez(tmp_path / "calib.npz", input=array)
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(InputError, match=match):
        run(exported("mlp"), out, calibration=str(tmp_path / "calib.npz"))
    assert out.read_bytes() == b"previous"  # an existing output is left as it was


def test_a_model_without_preprocessing_metadata_needs_calibration_data(exported, tmp_path):
    model = onnx.load(str(exported("mlp")))
    del model.metadata_props[:]
    del model.graph.metadata_props[:]  # no edgenn metadata at all, the digest's marker with it
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(InputError, match="not one of the zoo's digits models.*pass --calibration data.npz"):
        run(bare, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    # dynamic needs no data: seeded random inputs give the output error and the timings, no accuracy
    result = run(bare, tmp_path / "out.onnx", mode="dynamic")
    assert result.evaluation.fp32_accuracy is None and "random inputs" in result.evaluation.data


def test_evaluation_data_without_labels_gives_output_error(exported, tmp_path, digits):
    np.savez(tmp_path / "eval.npz", input=digits.val.inputs(Preprocessing("flat")))
    result = run(exported("mlp"), tmp_path / "out.onnx", mode="dynamic", eval_data=str(tmp_path / "eval.npz"))
    e = result.evaluation
    assert e.drop_points is None and e.argmax_agreement is not None and 0 < e.output_error < 0.2


def test_unknown_nodes_folders_and_overwriting_the_input(exported, tmp_path):
    source = exported("mlp")
    with pytest.raises(InputError, match="--exclude 'nope': the model has no node of that name; its compute nodes"):
        run(source, tmp_path / "out.onnx", exclude=("nope",))
    with pytest.raises(EdgennError, match="does not exist; create it first"):
        run(source, tmp_path / "missing" / "out.onnx")
    copy = tmp_path / "copy.onnx"
    shutil.copy(source, copy)
    with pytest.raises(InputError, match="is the model being quantized"):
        run(copy, copy)
    assert_nothing_written(tmp_path)


def test_static_on_a_model_it_cannot_quantize_says_what_to_do(exported, tmp_path):
    with pytest.raises(EdgennError, match="quantized no compute node.*no int8 LSTM.*try --mode dynamic"):
        run(exported("lstm"), tmp_path / "out.onnx", mode="static")
    assert_nothing_written(tmp_path)


def test_unknown_values_are_errors():
    for options, match in [
        (dict(mode="int4"), "unknown mode 'int4'"),
        (dict(method="kl"), "unknown calibration method"),
        (dict(format="onnx"), "unknown format"),
        (dict(samples=0), "--samples"),
        (dict(auto_recipes=("int4",)), "unknown auto recipe"),
    ]:
        with pytest.raises(InputError, match=match):
            QuantizeOptions(**options).checked()


# ------------------------------------------------------------------------------------------- CLI
def test_cli_table_and_json(exported, tmp_path):
    runner = CliRunner()
    out = tmp_path / "q.onnx"
    # the budget is not what this test is about: dynamic int8 costs the MLP 0.3-0.6 points, by CPU
    args = ["quantize", str(exported("mlp")), "-o", str(out), "--mode", "dynamic", "--max-accuracy-drop", "2"]
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    for text in ("accuracy (digits test split, 360)", "file size", "latency, batch 64", "int8 compute kernels run"):
        assert text in table.output
    as_json = runner.invoke(cli, [*args, "--json"])
    data = json.loads(as_json.stdout)
    assert data["recipe"]["mode"] == "dynamic" and data["output"] == str(out)
    assert [lat["batch_size"] for lat in data["evaluation"]["latency"]] == [1, 64]
    assert data["evaluation"]["kernels"]["int8_compute"] >= 1


@pytest.mark.parametrize(
    "args,match",
    [
        (["--mode", "int4"], "Invalid value for '--mode'"),
        (["--method", "kl"], "Invalid value for '--method'"),
    ],
)
def test_cli_unknown_mode_or_method_is_a_usage_error(args, match, exported, tmp_path):
    outcome = CliRunner().invoke(cli, ["quantize", str(exported("mlp")), "-o", str(tmp_path / "out.onnx"), *args])
    assert outcome.exit_code == 2 and match in outcome.output
    assert_nothing_written(tmp_path)


def test_cli_bad_input_is_one_line(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00\x01garbage")
    outcome = CliRunner().invoke(cli, ["quantize", str(bogus), "-o", str(tmp_path / "out.onnx")])
    assert outcome.exit_code == 1
    assert outcome.output.count("\n") == 1 and "not an ONNX model or is corrupt" in outcome.output
    assert "Traceback" not in outcome.output
    assert_nothing_written(tmp_path)


def test_auto_pick_ignores_differences_within_timing_noise():
    assert stable_fastest([0, 1, 2], [1.00, 1.05, 0.90]) == 0  # 5% is noise: the preferred recipe stays
    assert stable_fastest([0, 1, 2], [1.00, 1.05, 1.30]) == 2  # 30% is not
    assert stable_fastest([1, 3], [None, 0.62, None, 1.03]) == 3
