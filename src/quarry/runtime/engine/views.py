"""How step outputs look inside Jinja templates.

* a table renders as a Markdown table; ``t.column`` (or ``t['column']``) is the list
  of that column's values, ``t[0]`` the first row as a dict, ``for row in t`` walks
  the rows and ``t | length`` counts them;
* a text is itself;
* a loop is a list with one entry per iteration, each mapping the loop's task names
  to their outputs (``{% for it in regions %}{{ it.category_revenue }}{% endfor %}``);
* a sub-workflow or a conditional maps its task names to their outputs and renders
  as its last output.

Lookups go through ``__getattr__``/``__getitem__`` only, with no public methods, so
a column or task named ``items`` or ``values`` is never shadowed by a method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from quarry.runtime.engine.results import ListOutput, Output, TableOutput, TextOutput


class TableView:
    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("_") or name not in self._table.column_names:
            raise AttributeError(name)
        return list(self._table.column(name).to_pylist())

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self._table.slice(key, 1).to_pylist()[0] if -1 < key < len(self) else None
        if key not in self._table.column_names:
            raise KeyError(key)
        return self._table.column(key).to_pylist()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._table.to_pylist())

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def __str__(self) -> str:
        return markdown_table(self._table)


class MapView:
    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._values:
            raise AttributeError(name)
        return self._values[name]

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __str__(self) -> str:
        if not self._values:
            return ""
        return str(list(self._values.values())[-1])


class LoopValue:
    """``<loop name>.value`` and ``<loop name>.index`` inside a loop's tasks."""

    def __init__(self, value: Any, index: int) -> None:
        self.value = value
        self.index = index

    def __str__(self) -> str:
        return str(self.value)


def to_view(output: Output) -> Any:
    if isinstance(output, TableOutput):
        return TableView(output.table)
    if isinstance(output, TextOutput):
        return output.text
    if isinstance(output, ListOutput):
        return [MapView({k: to_view(v) for k, v in item.items()}) for item in output.items]
    return MapView({k: to_view(v) for k, v in output.outputs.items()})


def markdown_table(table: pa.Table) -> str:
    names = [_cell(name) for name in table.column_names]
    if not names:
        return ""
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for row in zip(*columns, strict=True):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")
