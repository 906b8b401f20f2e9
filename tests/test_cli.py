import json

import pytest
from click.testing import CliRunner

from edgenn.cli import cli


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_summary_of_tutorial_mlp(run):
    result = run("summary", "mlp_tutorial", "--batch-size", 5, "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert [r["parameters"] for r in data["layers"] if r["kind"] == "Linear"] == [12, 8, 6]
    assert data["total_parameters"] == 26
    table = run("summary", "mlp_tutorial", "--batch-size", 5).output
    assert "5x3" in table and "26" in table


def test_train_writes_weights_and_record(run, tmp_path):
    result = run("train", "lenet5", "--epochs", 2, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "train.json").read_text())["test_accuracy"] == data["test_accuracy"]


def test_unknown_model_lists_valid_names(run):
    result = run("train", "lenet", "--epochs", 1)
    assert result.exit_code == 1
    assert "unknown model 'lenet'; valid names: mlp" in result.output
    assert "Traceback" not in result.output


def test_bad_option_value_is_a_usage_error(run):
    result = run("train", "lenet5", "--optimizer", "lbfgs")
    assert result.exit_code == 2
    assert "Invalid value for '--optimizer'" in result.output


def test_unwritable_output_folder(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("train", "lenet5", "--out", blocker / "sub")
    assert result.exit_code == 1
    assert "cannot write to output folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_zoo_lists_models(run):
    data = json.loads(run("zoo", "--json").output)
    assert [m["name"] for m in data][:3] == ["mlp", "mlp_tutorial", "lenet5"]
