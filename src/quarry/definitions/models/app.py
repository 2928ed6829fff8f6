"""``*.app.yml``: tasks that fetch data plus display blocks that lay it out.

As in Oxy: the app file itself and ``row`` blocks are read with
``deny_unknown_fields`` (an unknown key is an error); every other block, control and
task ignores unknown keys (a warning here). Display blocks are a discriminated union
on ``type``; a ``type`` that is not a display type is an error with a did-you-mean.

Controls are declared in either of Oxy's two ways: the top-level ``controls:`` list,
or inline among the display blocks as ``type: controls`` (a group, ``items:``) or
``type: control`` (one control, whose kind is ``control_type`` because ``type`` is
taken). :meth:`AppConfig.all_controls` gathers both, in file order.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Tag

from quarry.definitions.models.common import Lenient, Strict, by_type
from quarry.definitions.models.tasks import Task

DISPLAY_KINDS = (
    "bar_chart",
    "control",
    "controls",
    "line_chart",
    "markdown",
    "pie_chart",
    "row",
    "table",
)

DisplayFormat = Literal["currency", "percent", "number"]
ControlType = Literal["select", "toggle", "date"]


class ControlConfig(Lenient):
    name: str
    type: ControlType
    label: str | None = None
    # A task whose first column gives the options (instead of static ``options``).
    source: str | None = None
    options: list[Any] | None = None
    default: Any = None


class MarkdownDisplay(Lenient):
    type: Literal["markdown"]
    content: str


class TableDisplay(Lenient):
    type: Literal["table"]
    data: str
    title: str | None = None
    formats: dict[str, DisplayFormat] | None = None


class BarChartDisplay(Lenient):
    type: Literal["bar_chart"]
    data: str
    x: str
    y: str
    series: str | None = None
    title: str | None = None
    y_format: DisplayFormat | None = None


class LineChartDisplay(Lenient):
    type: Literal["line_chart"]
    data: str
    x: str
    y: str
    series: str | None = None
    title: str | None = None
    x_axis_label: str | None = None
    y_axis_label: str | None = None
    y_format: DisplayFormat | None = None


class PieChartDisplay(Lenient):
    type: Literal["pie_chart"]
    data: str
    name: str
    value: str
    title: str | None = None
    value_format: DisplayFormat | None = None


class ControlsDisplay(Lenient):
    """Inline group of controls; each item is written like a top-level control."""

    type: Literal["controls"]
    items: list[ControlConfig]


class ControlDisplay(Lenient):
    """One inline control: its kind is ``control_type`` (``type`` says "control")."""

    type: Literal["control"]
    name: str
    control_type: ControlType
    label: str | None = None
    source: str | None = None
    options: list[Any] | None = None
    default: Any = None

    def as_control(self) -> ControlConfig:
        return ControlConfig(
            name=self.name,
            type=self.control_type,
            label=self.label,
            source=self.source,
            options=self.options,
            default=self.default,
        )


class RowDisplay(Strict):
    """Side-by-side layout of other blocks (rows may nest)."""

    type: Literal["row"]
    children: list[Display]
    # Oxy: an unsigned byte, at least 1.
    columns: Annotated[int, Field(ge=1, le=255)] | None = None


Display = Annotated[
    Annotated[BarChartDisplay, Tag("bar_chart")]
    | Annotated[ControlDisplay, Tag("control")]
    | Annotated[ControlsDisplay, Tag("controls")]
    | Annotated[LineChartDisplay, Tag("line_chart")]
    | Annotated[MarkdownDisplay, Tag("markdown")]
    | Annotated[PieChartDisplay, Tag("pie_chart")]
    | Annotated[RowDisplay, Tag("row")]
    | Annotated[TableDisplay, Tag("table")],
    by_type("display type", DISPLAY_KINDS),
]

RowDisplay.model_rebuild()

# Blocks that draw task data (``data:`` names a task of the app).
DATA_DISPLAYS = (BarChartDisplay, LineChartDisplay, PieChartDisplay, TableDisplay)


class AppConfig(Strict):
    # Oxy's docs call ``name`` required; the app is known by its path either way.
    name: str | None = None
    title: str | None = None
    description: str = ""
    controls: list[ControlConfig] = []
    tasks: list[Task]
    display: list[Display]

    def all_controls(self) -> list[ControlConfig]:
        """Top-level controls, then inline ones in display order (rows included)."""
        found = list(self.controls)

        def walk(blocks: list[Any]) -> None:
            for block in blocks:
                if isinstance(block, ControlsDisplay):
                    found.extend(block.items)
                elif isinstance(block, ControlDisplay):
                    found.append(block.as_control())
                elif isinstance(block, RowDisplay):
                    walk(block.children)

        walk(self.display)
        return found
