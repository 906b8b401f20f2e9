"""The `edgenn` script: the CLI where its libraries are installed, one line saying what to install where not.

`pip install edgenn` (no extras) is the runtime for apps: onnxruntime and numpy. The CLI needs click
at least (`edgenn predict` and `edgenn inspect` need nothing more than the runtime and onnx); the
other commands need the `full` extra. `edgenn verify` runs without click too: a package is proved
on its target, which has the runtime install.
"""

from __future__ import annotations

import importlib.util
import sys

FULL_INSTALL = "pip install 'edgenn[full]'"


def main() -> None:
    if importlib.util.find_spec("click") is None:
        if sys.argv[1:2] == ["verify"]:  # proving a package on its target needs the runtime only
            from edgenn.runtime.verify import main as verify_main

            sys.exit(verify_main(sys.argv[2:]))
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
