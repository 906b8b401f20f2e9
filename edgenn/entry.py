"""The `edgenn` script: the CLI where its libraries are installed, one line saying what to install where not.

`pip install edgenn` (no extras) is the runtime for apps: onnxruntime and numpy. The CLI needs click
at least (`edgenn predict` and `edgenn inspect` need nothing more than the runtime and onnx); the
other commands need the `full` extra.
"""

from __future__ import annotations

import importlib.util
import sys

FULL_INSTALL = "pip install 'edgenn[full]'"


def main() -> None:
    if importlib.util.find_spec("click") is None:
        print(
            f"edgenn: the command-line tool needs the full install ({FULL_INSTALL}); this one is the runtime for "
            "apps (import edgenn.runtime), which needs only onnxruntime and numpy",
            file=sys.stderr,
        )
        sys.exit(1)
    from edgenn.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
