"""Control values: defaults applied, each value checked against its control.

Values arrive as JSON (a run's variables) or as query text (``?region=North``); both
resolve to the same typed value, so both reach the same stored result.

As in Oxy, a control's ``options`` and ``default`` may be templates
(``"{{ now(fmt='%Y') }}"``): they are rendered, with no names in scope but Oxy's
globals, each time the controls are resolved, so "this year" stays current and the
rendered default is part of the result's cache key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from quarry.core.errors import BadRequest
from quarry.definitions.models.app import AppConfig, ControlConfig
from quarry.runtime.engine.templating import TemplateProblem, render_text

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# A control value is one option, date or flag: anything longer is refused, so a
# query string cannot push a large text into every task's templates.
MAX_VALUE_CHARS = 1_000


def _rendered(control: ControlConfig, field: str, value: Any) -> Any:
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return render_text(value, {})
    except TemplateProblem as exc:
        raise BadRequest(
            f"control {control.name!r}: its {field} is a template that does not render: {exc}",
            control=control.name,
        ) from None


def render_control(control: ControlConfig) -> ControlConfig:
    """``control`` with its ``options`` and ``default`` rendered as templates."""
    options = control.options
    if options is not None:
        options = [
            _rendered(control, f"option {i + 1}", option) for i, option in enumerate(options)
        ]
    default = _rendered(control, "default", control.default)
    if options is control.options and default is control.default:
        return control
    return control.model_copy(update={"options": options, "default": default})


def app_controls(app: AppConfig) -> list[ControlConfig]:
    """Every control of ``app`` (top-level and inline, in file order), rendered."""
    return [render_control(c) for c in app.all_controls()]


def default_value(control: ControlConfig) -> Any:
    if control.default is not None:
        return control.default
    if control.type == "select" and control.options:
        return control.options[0]
    if control.type == "toggle":
        return False
    return None


def _select(control: ControlConfig, value: Any) -> Any:
    if not control.options:  # options come from a task (``source``): any scalar goes
        if isinstance(value, (dict, list)):
            raise BadRequest(
                f"control {control.name!r} takes a single value, got {value!r}",
                control=control.name,
            )
        return value
    for option in control.options:
        if option == value and type(option) is type(value):
            return option
    text = str(value).lower() if isinstance(value, bool) else str(value)
    for option in control.options:
        option_text = str(option).lower() if isinstance(option, bool) else str(option)
        if option_text == text:
            return option
    raise BadRequest(
        f"control {control.name!r}: {value!r} is not one of its options {control.options!r}",
        control=control.name,
        options=control.options,
    )


def _toggle(control: ControlConfig, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise BadRequest(
        f"control {control.name!r} is a toggle: give true or false, not {value!r}",
        control=control.name,
    )


def _date(control: ControlConfig, value: Any) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise BadRequest(
            f"control {control.name!r} is a date: give YYYY-MM-DD, not {value!r}",
            control=control.name,
        ) from None


def _check(control: ControlConfig, value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise BadRequest(
            f"control {control.name!r}: the value is {len(value):,} characters, "
            f"over the limit of {MAX_VALUE_CHARS:,}",
            control=control.name,
        )
    if control.type == "select":
        return _select(control, value)
    if control.type == "toggle":
        return _toggle(control, value)
    return _date(control, value)


def resolve_controls(app: AppConfig, given: dict[str, Any]) -> dict[str, Any]:
    """Every control of ``app`` with its value: given (validated) or its default."""
    controls = app_controls(app)  # top-level and inline (display) controls, rendered
    known = {c.name for c in controls}
    unknown = sorted(set(given) - known)
    if unknown:
        raise BadRequest(
            f"unknown control {unknown[0]!r}; this app's controls are {sorted(known)}",
            control=unknown[0],
        )
    values: dict[str, Any] = {}
    for control in controls:
        if control.name in given and given[control.name] is not None:
            values[control.name] = _check(control, given[control.name])
        else:
            values[control.name] = default_value(control)
    return values
