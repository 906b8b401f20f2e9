"""edgenn score on Ray Data: every row in comes out, an unreadable one with its error; the output is atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="edgenn score needs Ray Data: pip install 'edgenn[score]'")
pq = pytest.importorskip("pyarrow.parquet")

from click.testing import CliRunner  # noqa: E402

from edgenn.cli import cli  # noqa: E402
from edgenn.errors import InputError, WriteError  # noqa: E402
from edgenn.runtime import Model  # noqa: E402
from edgenn.score import ScoreOptions, score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "models" / "lenet5" / "model.onnx"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, digits) -> Path:
    """24 test digits as PNG files (dark on light, as scanned) and one corrupt file."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures")
    for i, image in enumerate(digits.test.images[:24]):
        pixels = (255 - np.asarray(image) * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return folder


def test_a_folder_of_pictures_with_one_corrupt(pictures, tmp_path):
    result = run_cli("score", LENET, pictures, "-o", tmp_path / "out.parquet", "--actors", "2", "--batch-size", "8")
    data = json.loads(result.stdout)  # JSON alone on stdout; Ray's progress goes to stderr
    assert data["rows_in"] == data["rows_out"] == 25 and data["errors"] == 1
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    by_id = {row["id"]: row for row in table}
    assert by_id["broken.png"]["error"] and "broken.png" in by_id["broken.png"]["error"]
    assert by_id["broken.png"]["label"] is None
    model = Model(LENET)
    for i in range(24):
        row = by_id[f"{i:03d}.png"]
        expected = model.classify_picture(pictures / f"{i:03d}.png", 5)
        assert row["error"] is None
        assert row["top_labels"] == [c.label for c in expected]
        np.testing.assert_allclose(row["top_scores"], [c.score for c in expected], rtol=1e-5, atol=1e-6)
    assert [row["id"] for row in table] == sorted(by_id)  # the input's order


def test_parquet_with_tensor_columns_and_raw_outputs(tmp_path, digits):
    import pyarrow as pa

    from edgenn.runtime.model import Model as RuntimeModel

    model = RuntimeModel(LENET)
    x = np.stack([model.picture_input(np.asarray(im) / 16.0)[0] for im in digits.test.images[:40]])
    table = pa.table({"id": [f"row-{i}" for i in range(40)], "input": [s.tolist() for s in x]})
    table = table.append_column("note", pa.array(["x"] * 40))
    pq.write_table(table, tmp_path / "in.parquet")
    result = score(LENET, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(batch_size=16, raw=True))
    assert result.rows_in == result.rows_out == 40 and result.errors == 0
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["id"] for r in rows] == [f"row-{i}" for i in range(40)]
    expected = model.predict(x)["output"]
    np.testing.assert_allclose(np.array([r["output"] for r in rows]), expected, atol=1e-4, rtol=1e-3)


def test_bad_input_is_one_line_before_ray_starts(tmp_path):
    import ray

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    for source, says in ((tmp_path / "nope", "not found"), (empty, "holds no pictures")):
        with pytest.raises(InputError, match=says):
            score(LENET, source, tmp_path / "out.parquet")
    with pytest.raises(InputError, match="name it FILE.parquet"):
        score(LENET, empty, tmp_path / "out.csv")
    assert not ray.is_initialized()
    result = CliRunner().invoke(cli, ["score", str(LENET), str(tmp_path / "nope"), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1 and "not found" in result.output and "Traceback" not in result.output


def test_an_input_with_no_readable_row_is_one_line_and_no_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not a picture")
    first = r"the first: cannot decode picture a.png"
    with pytest.raises(InputError, match=r"no row of .* could be scored \(2 rows\); " + first):
        score(LENET, folder, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_failure_midway_leaves_no_output(pictures, tmp_path, monkeypatch):
    import pyarrow.parquet as parquet

    real = parquet.ParquetWriter.write_table
    calls = []

    def failing(self, table, *args, **kwargs):
        calls.append(len(table))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(parquet.ParquetWriter, "write_table", failing)
    with pytest.raises(WriteError, match="out.parquet': no space left"):  # one line naming the file
        score(LENET, pictures, tmp_path / "out.parquet", ScoreOptions(batch_size=8))
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def run_cli(*args: object):
    result = CliRunner().invoke(cli, [*(str(a) for a in args), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_ray_is_shut_down_with_no_process_left():
    import time

    import ray
    from conftest import ray_processes

    assert not ray.is_initialized()
    deadline = time.time() + 30
    while time.time() < deadline:
        left = ray_processes()
        if not left:
            break
        time.sleep(0.5)
    assert not left, left


def test_raw_outputs_when_a_whole_batch_fails_first(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    (folder / "a0.npy").write_bytes(b"broken")
    (folder / "a1.npy").write_bytes(b"broken")
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    for i in range(3):
        np.save(folder / f"b{i}.npy", x[i])  # one sample each, without the batch dim
    result = score(LENET, folder, tmp_path / "out.parquet", ScoreOptions(batch_size=2, raw=True))
    assert result.rows_out == 5 and result.errors == 2
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out.parquet").to_pylist()}
    assert rows["a0.npy"]["output"] is None and rows["a0.npy"]["error"]
    expected = Model(LENET).predict(x)["output"]
    got = np.array([rows[f"b{i}.npy"]["output"] for i in range(3)])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
