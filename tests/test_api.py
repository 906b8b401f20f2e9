"""The public API of `import edgenn`: lazy, and the same whichever way a stage is reached."""

import subprocess
import sys

import pytest

SNIPPET = """
import sys
{first}
import edgenn, torch
result = edgenn.export(torch.nn.Linear(3, 2), torch.rand(1, 3), sys.argv[1])
assert result.passed, result
from edgenn import TrainConfig, bench, build, quantize, validate
assert callable(bench) and callable(build) and callable(quantize) and callable(validate)
print("ok")
"""


@pytest.mark.parametrize("first", ["", "import edgenn.export", "from edgenn.export import ExportOptions"])
def test_stage_functions_are_callable_however_imported(first, tmp_path):
    code = SNIPPET.format(first=first)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_import_edgenn_is_cheap():
    heavy = "('torch', 'onnx', 'onnxscript', 'sklearn')"
    code = f"import sys, edgenn; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
