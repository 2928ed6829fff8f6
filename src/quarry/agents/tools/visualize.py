"""``visualize``: the model describes a chart (Oxy's parameters: ``title``, ``xAxis``,
``yAxis``, ``series`` of line/bar/pie with their data); the tool checks it and hands
it on as a chart spec the UI and API render (``chart`` in the tool result's event and
in the reply's ``tools``). Nothing is written to disk, so it is the same on every
replica; a spec that is not a chart is the tool's error, which the model fixes."""

from __future__ import annotations

import json
from typing import Any

from quarry.agents.providers.base import ToolSpec
from quarry.agents.tools.base import ToolFailed, ToolOutcome
from quarry.definitions.models.agent import VisualizeTool

DESCRIPTION = (
    "Render a chart based on the data provided, make sure to use the correct chart type and fields."
)
MAX_POINTS = 5000
"""Data points a chart may hold (all series together)."""
CHART_TYPES = ("line", "bar", "pie")

_AXIS = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "description": "Type of axis scale: 'category' for categorical data, 'value' for "
            "numerical data, 'time' for time series, 'log' for logarithmic scale",
        },
        "name": {"type": "string", "description": "Display name for the axis"},
        "data": {
            "type": "array",
            "items": {},
            "description": "Category data array for category axis type (e.g., ['Mon', "
            "'Tue']). Not needed for value/time/log axis types",
        },
    },
    "required": ["type"],
}
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "Chart title"},
        "xAxis": {**_AXIS, "description": "X-axis configuration. Not applicable for pie charts"},
        "yAxis": {**_AXIS, "description": "Y-axis configuration. Not applicable for pie charts"},
        "series": {
            "type": "array",
            "description": "Data series defining chart content and chart type",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": list(CHART_TYPES)},
                    "data": {
                        "type": "array",
                        "items": {},
                        "description": "Simple array for line/bar charts, or array of "
                        "objects with name/value for pie charts",
                    },
                },
                "required": ["type"],
            },
        },
    },
    "required": ["series"],
}


def chart_spec(arguments: dict[str, Any]) -> dict[str, Any]:
    """The chart the arguments describe, checked; ToolFailed saying what is wrong."""
    series = arguments.get("series")
    if not isinstance(series, list) or not series:
        raise ToolFailed("'series' must be a non-empty list of series")
    points = 0
    checked = []
    for index, item in enumerate(series):
        if not isinstance(item, dict):
            raise ToolFailed(f"series[{index}] must be an object")
        kind = item.get("type")
        if kind not in CHART_TYPES:
            raise ToolFailed(f"series[{index}].type must be one of {', '.join(CHART_TYPES)}")
        data = item.get("data") or []
        if not isinstance(data, list):
            raise ToolFailed(f"series[{index}].data must be a list")
        points += len(data)
        checked.append({k: item[k] for k in ("name", "type", "data") if k in item})
    if points > MAX_POINTS:
        raise ToolFailed(
            f"the chart has {points} data points; at most {MAX_POINTS} (aggregate first)"
        )
    spec: dict[str, Any] = {"series": checked}
    for key in ("title", "xAxis", "yAxis"):
        value = arguments.get(key)
        if value is not None:
            if key != "title" and not isinstance(value, dict):
                raise ToolFailed(f"'{key}' must be an object")
            spec[key] = value
    json.dumps(spec)  # the spec travels as JSON: it must be JSON
    return spec


class Visualize:
    def __init__(self, config: VisualizeTool) -> None:
        self.spec = ToolSpec(
            config.name or "visualize", config.description or DESCRIPTION, PARAMETERS
        )

    async def call(self, arguments: dict[str, Any]) -> ToolOutcome:
        chart = chart_spec(arguments)
        title = chart.get("title")
        said = f"The chart {title!r} is shown to the user." if title else "The chart is shown."
        return ToolOutcome(said, {"chart": chart})
