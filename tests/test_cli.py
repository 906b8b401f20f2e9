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


def test_train_says_what_it_trains_when_given_a_users_factory(run, tmp_path):
    result = run("train", "tests/user_models.py:regressor", "--out", tmp_path)
    assert result.exit_code == 1
    assert "trains the zoo's reference models on digits" in result.output and "unknown model" not in result.output
    assert not any(tmp_path.iterdir())


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


# ------------------------------------------------------------------------------ terminal tables
WIDE_HEADERS = [
    "variant",
    "provider",
    "batch",
    "median latency ms",
    "p90 latency ms",
    "samples per second",
    "speedup [95% CI]",
    "input shape",
]
WIDE_ROWS = [
    ["model.quant", "openvino:bf16", 64, 1.4567, 1.6012, 43954.2, "1.32x [1.30, 1.35]", "[64, 1, 32, 32]"],
    ["eager", "torch", 1, 0.0459, 0.0501, 21755.0, "baseline", "[1, 1, 32, 32]"],
]


@pytest.fixture
def terminal():
    from edgenn import report

    pytest.importorskip("rich")
    yield report
    report.terminal_tables(None)


def test_terminal_table_fits_the_terminal_without_breaking_values(terminal):
    plain = terminal.table(WIDE_HEADERS, WIDE_ROWS)
    assert max(len(line) for line in plain.splitlines()) > 100  # too wide for the terminal as plain text
    assert terminal.terminal_tables(100)
    fitted = _without_colours(terminal.table(WIDE_HEADERS, WIDE_ROWS, title="bench"))
    assert max(len(line) for line in fitted.splitlines()) <= 100
    data_lines = [line for line in fitted.splitlines() if line.startswith(("model.quant", "eager"))]
    assert len(data_lines) == 2  # one line per row: headers wrapped, values did not
    for value in ("openvino:bf16", "1.46", "43,954.20", "1.32x [1.30, 1.35]", "[64, 1, 32, 32]"):
        assert value in data_lines[0]  # whole, and rich markup such as [64, ...] kept as text
    assert "\x1b[" in terminal.table(WIDE_HEADERS, WIDE_ROWS)  # bold headers for a person at a terminal


def test_terminal_too_narrow_falls_back_to_plain_lines(terminal):
    plain = terminal.table(WIDE_HEADERS, WIDE_ROWS)
    terminal.terminal_tables(40)  # the values alone need more: rich would crop the last columns
    assert terminal.table(WIDE_HEADERS, WIDE_ROWS) == plain


def test_no_color_keeps_the_layout_without_escape_codes(terminal, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    terminal.terminal_tables(100)
    assert "\x1b[" not in terminal.table(WIDE_HEADERS, WIDE_ROWS)


def test_output_that_is_not_a_terminal_is_plain(run):

    out = run("zoo").output
    assert "\x1b[" not in out and "----" in out  # click's runner is not a terminal: plain table
    from edgenn import tables

    assert tables._terminal_width is None


def _without_colours(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
