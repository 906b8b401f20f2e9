"""Aligned text tables and JSON: the rendering primitives every report uses (the bottom layer).

Tables are plain aligned text by default: what a pipe, a log file or a test reads. The CLI turns on
terminal tables (`terminal_tables`) when stdout is a terminal and rich is installed: rich fits wide
tables (bench's rows reach 220 columns) to the terminal's width by wrapping cells, where plain text
would wrap whole lines. The standard library only (rich where installed), so that `edgenn verify`
renders on a runtime-only install.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

_terminal_width: int | None = None
LONG_TEXT = (
    24  # cells up to this long stay on one line in terminal tables  # set: render tables with rich at this width
)


def terminal_tables(width: int | None) -> bool:
    """Render tables with rich for a terminal `width` columns wide (None: plain text again).

    Returns whether rich tables are on: rich is optional (the `full` extra has it), and without it
    tables stay plain.
    """
    global _terminal_width
    try:
        import rich  # noqa: F401
    except ImportError:
        width = None
    _terminal_width = width
    return width is not None


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """An aligned table; numbers right-aligned, text left-aligned."""
    body = [[_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(r[i]) for r in body) and bool(body) for i in range(len(headers))]
    if _terminal_width is not None:
        fitted = _rich_table(headers, body, numeric, title, _terminal_width)
        if fitted is not None:
            return fitted
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    return "\n".join(out)


def _rich_table(
    headers: Sequence[str], body: list[list[str]], numeric: list[bool], title: str, width: int
) -> str | None:
    """The table fitted to `width` columns by rich, or None where it cannot fit without breaking a number.

    Headers wrap at their spaces, which is where the width goes; a value is never broken across lines
    unless it is long text (a path, a note), which folds. The widths are chosen here, not by rich,
    which would crop the last columns of a table too wide for the terminal.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # plain text, not rich markup: a shape like [1, 64] stays as it is

    gap = 2  # characters between columns
    columns = []
    for i, header in enumerate(headers):
        longest = max((len(row[i]) for row in body), default=0)
        value = longest if numeric[i] or longest <= LONG_TEXT else LONG_TEXT
        columns.append([max(value, *(len(word) for word in header.split() or [""])), len(header), value])
    spare = width - sum(c[0] for c in columns) - gap * (len(columns) - 1)
    if spare < 0:
        return None
    for column in columns:  # unwrap headers, left to right, while the terminal has room
        grow = min(spare, max(0, column[1] - column[0]))
        column[0] += grow
        spare -= grow

    grid = Table(
        title=Text(title, style="bold") if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, gap - 1, 0, 0),  # the column divider is the gap's other character
        collapse_padding=False,
    )
    for (fitted, _, _), header, num in zip(columns, headers, numeric):
        grid.add_column(Text(header, style="bold"), justify="right" if num else "left", width=fitted, overflow="fold")
    for row in body:
        grid.add_row(*(Text(cell) for cell in row))
    # NO_COLOR (no-color.org) keeps rich's layout without its colours.
    colours = None if os.environ.get("NO_COLOR") else "standard"
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=colours is not None, color_system=colours, highlight=False)
    console.print(grid)
    return out.getvalue().rstrip("\n")


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in pairs)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default) + "\n"


def percent(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x"))
        return True
    except ValueError:
        return text == "-"
