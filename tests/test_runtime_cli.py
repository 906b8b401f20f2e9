"""`edgenn predict` on real pictures and arrays with a real exported LeNet-5, and its bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgenn.cli import cli
from edgenn.runtime import Model, providers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lenet_path(exported):
    return exported("lenet5")


@pytest.fixture(scope="module")
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def right_and_wrong(lenet_path, digits):
    """Indices of test digits the model classifies right, and the model's accuracy over the split."""
    model = Model(lenet_path, providers="cpu")
    predicted = model.predict(digits.test.inputs(model.preprocessing))["output"].argmax(axis=1)
    return np.flatnonzero(predicted == digits.test.labels), float(np.mean(predicted == digits.test.labels))


def save_digit_png(image: np.ndarray, path: Path) -> Path:
    """An (8, 8) digit in [0, 1] saved as a 64x64 8-bit grey PNG, as a person would draw it."""
    Image.fromarray(np.round(np.kron(image, np.ones((8, 8))) * 255).astype(np.uint8)).save(path)
    return path


def test_predict_prints_the_true_label_of_a_digit_picture(run, lenet_path, digits, right_and_wrong, tmp_path):
    index = int(right_and_wrong[0][0])
    picture = save_digit_png(digits.test.images[index], tmp_path / "digit.png")
    result = run("predict", lenet_path, picture, "--top-k", 3)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "read as picture" in lines[0]
    assert lines[1].split() == ["rank", "label", "index", "probability"]
    assert lines[3].split()[:2] == ["1", str(digits.test.labels[index])]
    assert len(lines) == 6  # title, header, rule, three classes


def test_predict_json_on_pictures_matches_the_labels(run, lenet_path, digits, tmp_path):
    picks = np.random.default_rng(0).choice(len(digits.test), size=12, replace=False)
    correct = 0
    for i in picks:
        picture = save_digit_png(digits.test.images[i], tmp_path / f"digit{i}.png")
        data = json.loads(run("predict", lenet_path, picture, "--json").output)
        assert data["read_as"] == "picture" and data["providers"][-1] == "CPUExecutionProvider"
        assert data["session"]["provider"] == providers.resolve_choice("auto")  # --provider auto, the default
        top = data["predictions"][0]
        assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
        correct += top[0]["label"] == str(digits.test.labels[i])
    assert correct >= 11  # the model is right on about 98% of test digits


def test_predict_reads_npy_batches_samples_and_picture_arrays(run, lenet_path, digits, tmp_path):
    model = Model(lenet_path, providers="cpu")
    inputs = digits.test.inputs(model.preprocessing)[:4]
    expected = [str(r[0].index) for r in model.classify(inputs, top_k=1)]
    np.save(tmp_path / "batch.npy", inputs)
    np.save(tmp_path / "sample.npy", inputs[2])
    np.save(tmp_path / "picture.npy", np.round(digits.test.images[2] * 255).astype(np.uint8))
    batch = json.loads(run("predict", lenet_path, tmp_path / "batch.npy", "--json", "--top-k", 1).output)
    assert batch["read_as"] == "batch" and [p[0]["label"] for p in batch["predictions"]] == expected
    sample = json.loads(run("predict", lenet_path, tmp_path / "sample.npy", "--json").output)
    assert sample["read_as"] == "sample" and sample["predictions"][0][0]["label"] == expected[2]
    picture = json.loads(run("predict", lenet_path, tmp_path / "picture.npy", "--json").output)
    assert picture["read_as"] == "picture" and picture["predictions"][0][0]["label"] == expected[2]
    table = run("predict", lenet_path, tmp_path / "batch.npy", "--top-k", 2).output.splitlines()
    assert table[1].split() == ["sample", "rank", "label", "index", "probability"] and len(table) == 3 + 8


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing_model", "model file not found"),
        ("text_model", "is not an ONNX model"),
        ("missing_input", "input file not found"),
        ("broken_png", "cannot decode picture"),
        ("wrong_npy", "an array shaped (3, 5, 7) fits neither a batch (batch, 1, 32, 32) nor one sample"),
        ("nan_npy", "expected finite values, got 1 NaN"),
        ("text_input", "cannot read"),
    ],
)
def test_predict_bad_input_is_one_line_and_exit_1(run, lenet_path, tmp_path, case, fragment):
    (tmp_path / "model.txt").write_text("not a model")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("seven")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5, 7), np.float32))
    nan = np.zeros((1, 1, 32, 32), np.float32)
    nan[0, 0, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    model, source, extra = lenet_path, tmp_path / "wrong.npy", []
    if case == "missing_model":
        model = tmp_path / "absent.onnx"
    elif case == "text_model":
        model = tmp_path / "model.txt"
    elif case == "missing_input":
        source = tmp_path / "absent.png"
    elif case == "broken_png":
        source = tmp_path / "broken.png"
    elif case == "nan_npy":
        source = tmp_path / "nan.npy"
    elif case == "text_input":
        source = tmp_path / "notes.txt"
    result = run("predict", model, source, *extra)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and fragment in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_predict_unknown_provider_is_a_usage_error(run, lenet_path, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    result = run("predict", lenet_path, tmp_path / "x.npy", "--provider", "gpu")
    assert result.exit_code == 2
    assert "unknown provider 'gpu': use one of auto, cpu, openvino, cuda, tensorrt" in result.output


def test_predict_in_a_real_process_exits_1_without_traceback(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07" + b"\x00" * 10)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgenn.cli",
            "predict",
            str(tmp_path / "model.onnx"),
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: ") and "truncated or corrupt ONNX file" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
