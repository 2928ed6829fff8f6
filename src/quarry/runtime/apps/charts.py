"""Chart blocks as Vega-Lite v5 specs with their data inline.

Rows keep the order of the task's output (``sort: null``): the author's ``ORDER BY``
decides the order of bars, slices and categorical axes.
"""

from __future__ import annotations

import json
from typing import Any

from quarry.definitions.models.app import (
    BarChartDisplay,
    DisplayFormat,
    LineChartDisplay,
    PieChartDisplay,
)

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
HEIGHT = 280

# d3-format strings; ``percent`` values are already 0-100, so only a suffix is added.
_AXIS_FORMAT = {"currency": "$,.2~f", "number": ",.2~f"}
_TOOLTIP_FORMAT = {"currency": "$,.2f", "number": ",.2~f"}

Rows = list[dict[str, Any]]


def field_ref(name: str) -> str:
    """A column name as a Vega-Lite field: dots and brackets would mean nesting."""
    out = name.replace("\\", "\\\\")
    for char in ".[]":
        out = out.replace(char, "\\" + char)
    return out


def _datum(name: str) -> str:
    return f"datum[{json.dumps(name)}]"


def _base(rows: Rows) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "data": {"values": rows},
        "width": "container",
        "height": HEIGHT,
        "autosize": {"type": "fit", "contains": "padding"},
    }


def _axis(fmt: DisplayFormat | None, title: str | None) -> dict[str, Any]:
    axis: dict[str, Any] = {}
    if title is not None:
        axis["title"] = title
    if fmt == "percent":
        axis["labelExpr"] = "format(datum.value, ',.2~f') + '%'"
    elif fmt is not None:
        axis["format"] = _AXIS_FORMAT[fmt]
    return axis


def _measure(name: str, fmt: DisplayFormat | None, title: str | None) -> dict[str, Any]:
    enc: dict[str, Any] = {"field": field_ref(name), "type": "quantitative"}
    axis = _axis(fmt, title)
    if axis:
        enc["axis"] = axis
    return enc


def _tooltip(
    name: str, kind: str, fmt: DisplayFormat | None, transforms: list[dict[str, Any]]
) -> dict[str, Any]:
    if kind != "quantitative":
        return {"field": field_ref(name), "type": kind}
    if fmt == "percent":
        label = f"{name} (%)"
        transforms.append(
            {"calculate": f"format({_datum(name)}, ',.2~f') + '%'", "as": field_ref(label)}
        )
        return {"field": field_ref(label), "type": "nominal", "title": name}
    return {
        "field": field_ref(name),
        "type": "quantitative",
        "format": _TOOLTIP_FORMAT.get(fmt or "number", ",.2~f"),
    }


def _x_type(kind: str, chart: str) -> str:
    if kind == "temporal":
        return "temporal"
    if kind == "number" and chart == "line":
        return "quantitative"
    return "ordinal" if chart == "line" or kind == "number" else "nominal"


def bar_spec(block: BarChartDisplay, rows: Rows, kinds: dict[str, str]) -> dict[str, Any]:
    x_type = _x_type(kinds.get(block.x, "text"), "bar")
    transforms: list[dict[str, Any]] = []
    x: dict[str, Any] = {"field": field_ref(block.x), "type": x_type, "axis": {"labelAngle": 0}}
    if x_type != "temporal":
        x["sort"] = None
    encoding: dict[str, Any] = {"x": x, "y": _measure(block.y, block.y_format, None)}
    tooltip = [
        _tooltip(block.x, x_type, None, transforms),
        _tooltip(block.y, "quantitative", block.y_format, transforms),
    ]
    if block.series:
        encoding["color"] = {"field": field_ref(block.series), "type": "nominal"}
        encoding["xOffset"] = {"field": field_ref(block.series), "type": "nominal"}
        tooltip.append(_tooltip(block.series, "nominal", None, transforms))
    encoding["tooltip"] = tooltip
    spec = _base(rows) | {"mark": {"type": "bar", "tooltip": True}, "encoding": encoding}
    if transforms:
        spec["transform"] = transforms
    return spec


def line_spec(block: LineChartDisplay, rows: Rows, kinds: dict[str, str]) -> dict[str, Any]:
    x_type = _x_type(kinds.get(block.x, "text"), "line")
    transforms: list[dict[str, Any]] = []
    x: dict[str, Any] = {"field": field_ref(block.x), "type": x_type}
    if block.x_axis_label is not None:
        x["axis"] = {"title": block.x_axis_label}
    if x_type == "ordinal":
        x["sort"] = None
    encoding: dict[str, Any] = {
        "x": x,
        "y": _measure(block.y, block.y_format, block.y_axis_label),
    }
    tooltip = [
        _tooltip(block.x, x_type, None, transforms),
        _tooltip(block.y, "quantitative", block.y_format, transforms),
    ]
    if block.series:
        encoding["color"] = {"field": field_ref(block.series), "type": "nominal"}
        tooltip.append(_tooltip(block.series, "nominal", None, transforms))
    encoding["tooltip"] = tooltip
    spec = _base(rows) | {
        "mark": {"type": "line", "point": True, "tooltip": True},
        "encoding": encoding,
    }
    if transforms:
        spec["transform"] = transforms
    return spec


def pie_spec(block: PieChartDisplay, rows: Rows) -> dict[str, Any]:
    transforms: list[dict[str, Any]] = []
    encoding: dict[str, Any] = {
        "theta": {"field": field_ref(block.value), "type": "quantitative", "stack": True},
        "color": {"field": field_ref(block.name), "type": "nominal", "sort": None},
        "order": {"field": field_ref(block.value), "type": "quantitative", "sort": "descending"},
    }
    encoding["tooltip"] = [
        _tooltip(block.name, "nominal", None, transforms),
        _tooltip(block.value, "quantitative", block.value_format, transforms),
    ]
    spec = _base(rows) | {
        "mark": {"type": "arc", "tooltip": True},
        "encoding": encoding,
        "view": {"stroke": None},
    }
    if transforms:
        spec["transform"] = transforms
    return spec
