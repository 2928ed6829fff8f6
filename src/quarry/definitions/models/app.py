"""``*.app.yml``: tasks that fetch data plus display blocks that lay it out.

Display blocks are a discriminated union on ``type`` like tasks, so a block kind
Quarry cannot render yet (``controls``, ``control``) is named in one clear error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Tag

from quarry.definitions.models.common import JsonObject, NonNegativeInt, Strict, by_type
from quarry.definitions.models.tasks import Task

DISPLAY_KINDS = ("bar_chart", "line_chart", "markdown", "pie_chart", "row", "table")

DisplayFormat = Literal["currency", "percent", "number"]
ControlType = Literal["select", "toggle", "date"]


class ControlConfig(Strict):
    name: str
    type: ControlType
    label: str | None = None
    options: list[Any] | None = None
    source: str | None = None
    default: Any = None


class MarkdownDisplay(Strict):
    type: Literal["markdown"]
    content: str


class TableDisplay(Strict):
    type: Literal["table"]
    data: str
    title: str | None = None
    formats: JsonObject | None = None


class BarChartDisplay(Strict):
    type: Literal["bar_chart"]
    data: str
    x: str
    y: str
    series: str | None = None
    title: str | None = None
    y_format: DisplayFormat | None = None


class LineChartDisplay(Strict):
    type: Literal["line_chart"]
    data: str
    x: str
    y: str
    series: str | None = None
    title: str | None = None
    x_axis_label: str | None = None
    y_axis_label: str | None = None
    y_format: DisplayFormat | None = None


class PieChartDisplay(Strict):
    type: Literal["pie_chart"]
    data: str
    name: str
    value: str
    title: str | None = None
    value_format: DisplayFormat | None = None


class RowDisplay(Strict):
    """Side-by-side layout of other blocks (rows may nest)."""

    type: Literal["row"]
    children: list[Display]
    columns: NonNegativeInt | None = None


Display = Annotated[
    Annotated[BarChartDisplay, Tag("bar_chart")]
    | Annotated[LineChartDisplay, Tag("line_chart")]
    | Annotated[MarkdownDisplay, Tag("markdown")]
    | Annotated[PieChartDisplay, Tag("pie_chart")]
    | Annotated[RowDisplay, Tag("row")]
    | Annotated[TableDisplay, Tag("table")],
    by_type("display kind", DISPLAY_KINDS),
]

RowDisplay.model_rebuild()


class AppConfig(Strict):
    tasks: list[Task]
    display: list[Display]
    title: str | None = None
    description: str = ""
    controls: list[ControlConfig] = []
