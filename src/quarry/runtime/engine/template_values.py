"""Values inside templates: what a template may touch, and how values print.

Two concerns, both about matching Oxy while staying sandboxed:

* **The sandbox.** The minijinja binding hands any Python object that is not a plain
  scalar to the engine as a live object: a template could call its public methods
  (``{{ my_list.clear() }}`` would empty a run's variable). :func:`to_template` turns
  every value of a template's context into scalars or one of the read-only views
  below, which expose items only (no methods, nothing that starts with ``_``: the
  binding refuses those names itself). :func:`from_template` turns a result back.
* **Printing as Oxy prints.** Oxy 0.5.51 renders with minijinja 2.x, whose text form
  of a value is Rust's: ``true``/``false``, floats in Rust's shortest form
  (``1e20`` prints ``100000000000000000000.0``), lists and maps in Rust debug form
  (``[1, "a", none]``, ``{"k": 1}``). The binding ships a later minijinja that prints
  ``True``/``None`` as Python does, so Quarry formats these itself
  (:func:`display`, :func:`debug`), as Oxy's ``sqlquote`` and ``tojson`` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa

from quarry.runtime.engine.views import LoopValue, MapView, TableView


class _Hidden:
    """What a view's method names (``items``, ``append``, ``clear``...) hold: it
    prints as nothing, is false and cannot be called. ``items`` must exist at all for
    the binding to treat an object as a mapping; it never reads it (``|items`` goes
    through ``[]``)."""

    __slots__ = ()
    __iter__ = None

    def __str__(self) -> str:
        return ""

    def __bool__(self) -> bool:
        return False


_HIDDEN = _Hidden()


class SeqValue(list[Any]):
    """A read-only list: ``x[0]``, ``for v in x``, ``x | length``; nothing else.

    A list underneath, so the engine reads items at C speed; its items are already
    template values. Every list method is hidden (prints nothing, cannot be called),
    so ``x.append()`` or ``x.clear()`` cannot be reached. (Not a tuple: the binding
    turns tuples into its own tuple type, which never equals a list.)
    """

    __slots__ = ("_plain",)
    _plain: bool

    def __str__(self) -> str:
        return debug(self)

    __repr__ = __str__


class MapValue(dict[Any, Any]):
    """A read-only mapping: ``m.key``, ``m['key']``, ``m | items``; nothing else.

    A dict underneath (C-speed lookups) holding template values; every dict method
    is hidden, so ``m.clear()`` or ``m.update()`` cannot be reached. ``items`` must
    exist for the binding to see a mapping; it is never read (``|items`` iterates).
    """

    __slots__ = ()

    def __str__(self) -> str:
        return debug(self)

    __repr__ = __str__


for _name in ("append", "clear", "copy", "count", "extend", "index", "insert", "pop"):
    setattr(SeqValue, _name, _HIDDEN)
for _name in ("remove", "reverse", "sort"):
    setattr(SeqValue, _name, _HIDDEN)
for _name in ("clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem"):
    setattr(MapValue, _name, _HIDDEN)
for _name in ("setdefault", "update", "values"):
    setattr(MapValue, _name, _HIDDEN)


def _seq(items: Any, *, plain: bool = False) -> SeqValue:
    """``plain``: the items are known to be scalars already (an Arrow column of
    text, numbers or booleans), so they are not looked at one by one."""
    seq = SeqValue(items if plain else [to_template(item) for item in items])
    seq._plain = plain
    return seq


def _map(data: dict[Any, Any]) -> MapValue:
    return MapValue({key: to_template(value) for key, value in dict.items(data)})


def _plain_type(kind: pa.DataType) -> bool:
    """An Arrow type whose Python values reach templates unchanged."""
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


class TableValue:
    """A step's table: ``t.column`` (that column's values), ``t[0]`` (the first row),
    ``for row in t``, ``t | length``; prints as a Markdown table.

    Rows are read from Arrow once, on first use, into a list the engine iterates at
    C speed (the table is not registered as a sequence, so the engine walks it with
    ``iter()`` in one call instead of asking for each index)."""

    __slots__ = ("_rows", "_view")

    def __init__(self, view: TableView) -> None:
        self._view = view
        self._rows: list[MapValue] | None = None

    def _all_rows(self) -> list[MapValue]:
        if self._rows is None:
            if all(_plain_type(field.type) for field in self._view._table.schema):
                self._rows = [MapValue(row) for row in self._view]
            else:
                self._rows = [_map(row) for row in self._view]
        return self._rows

    def __getitem__(self, key: Any) -> Any:
        if type(key) is int:
            return self._all_rows()[key]
        if isinstance(key, str):
            column = self._view[key]
            return _seq(column, plain=_plain_type(self._view._table.schema.field(key).type))
        raise KeyError(key)

    def __len__(self) -> int:
        return len(self._view)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all_rows())

    def __str__(self) -> str:
        return str(self._view)


class OutputsValue:
    """A loop iteration's or a sub-workflow's outputs, by task name."""

    __slots__ = ("_view",)
    items = _HIDDEN

    def __init__(self, view: MapView) -> None:
        self._view = view

    def __getitem__(self, key: Any) -> Any:
        return to_template(self._view[key])

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._view))

    def __len__(self) -> int:
        return len(self._view)

    def __contains__(self, key: object) -> bool:
        return key in list(self._view)

    def __str__(self) -> str:
        return str(self._view)


class LoopItemValue:
    """``<loop name>.value`` and ``<loop name>.index`` inside a ``loop_sequential``."""

    __slots__ = ("_item",)
    __iter__ = None

    def __init__(self, item: LoopValue) -> None:
        self._item = item

    def __getitem__(self, key: Any) -> Any:
        if key == "value":
            return to_template(self._item.value)
        if key == "index":
            return self._item.index
        raise KeyError(key)

    def __str__(self) -> str:
        return display(to_template(self._item.value))


_VIEWS = (SeqValue, MapValue, TableValue, OutputsValue, LoopItemValue)


def to_template(value: Any) -> Any:
    """A value a template may see: scalars as they are, containers as read-only views.

    Dates become ISO text (Oxy's templates see JSON, where dates are text), decimals
    become floats, bytes text; any other object becomes its text, so no Python
    object with methods ever reaches the engine.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, _VIEWS):
        return value
    if isinstance(value, (list, tuple)):
        return _seq(value)
    if isinstance(value, dict):
        return _map(value)
    if isinstance(value, TableView):
        return TableValue(value)
    if isinstance(value, MapView):
        return OutputsValue(value)
    if isinstance(value, LoopValue):
        return LoopItemValue(value)
    if isinstance(value, int):  # IntEnum and friends; bool is handled above
        return int(value)
    if isinstance(value, (float, Decimal)):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (datetime, date, time)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def to_template_context(names: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The names a template reads (``used``), as template values."""
    return {name: to_template(names[name]) for name in used if name in names}


def from_template(value: Any) -> Any:
    """A template's result as plain Python: lists, dicts, scalars, or the engine's
    table and output views (so ``loop_sequential`` can walk a table's rows)."""
    if isinstance(value, SeqValue):
        if value._plain:
            return list(value)
        return [from_template(item) for item in value]
    if isinstance(value, MapValue):
        return {k: from_template(v) for k, v in dict.items(value)}
    if isinstance(value, TableValue):
        return value._view
    if isinstance(value, OutputsValue):
        return value._view
    if isinstance(value, LoopItemValue):
        return value._item
    if isinstance(value, list):
        return [from_template(item) for item in value]
    if isinstance(value, tuple):
        return [from_template(item) for item in value]
    if isinstance(value, dict):
        return {k: from_template(v) for k, v in value.items()}
    if isinstance(value, str) and type(value) is not str:
        return str.__str__(value)  # the binding's "safe" strings
    return value


# --- printing as Rust / minijinja 2.x does --------------------------------------


def rust_display_float(value: float) -> str:
    """minijinja's ``{{ 1.5 }}``: Rust's shortest digits, never an exponent, ``.0``
    added to whole numbers (``1e20`` -> ``100000000000000000000.0``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def rust_debug_float(value: float) -> str:
    """Rust's ``{:?}`` of an f64 (a float inside a printed list): decimal between
    1e-4 and 1e16, else ``1e16`` / ``1.5e-7``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def _rust_debug_str(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\0":
            out.append("\\0")
        elif not char.isprintable() and char != " ":
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _scalar_text(value: Any, *, none: str, float_text: Callable[[float], str]) -> str | None:
    """The text of ``None``, a boolean, a float or an int, shared by :func:`debug`,
    :func:`display` and :func:`to_json` (they differ only in ``None`` and floats);
    ``None`` for any other value."""
    if value is None:
        return none
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, int):
        return str(value)
    return None


def debug(value: Any) -> str:
    """A value as it appears inside a printed list or map (Rust debug form)."""
    scalar = _scalar_text(value, none="none", float_text=rust_debug_float)
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return _rust_debug_str(value)
    if isinstance(value, (MapValue, OutputsValue, dict)):
        keys = list(value)
        pairs = (f"{debug(to_template(k))}: {debug(to_template(value[k]))}" for k in keys)
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, (SeqValue, TableValue, list, tuple)):
        return "[" + ", ".join(debug(to_template(item)) for item in value) + "]"
    if isinstance(value, LoopItemValue):
        return debug(value["value"])
    return debug(to_template(value))


def display(value: Any) -> str:
    """A value's text as Oxy's minijinja prints it (``value.to_string()`` in Rust).

    ``None`` prints as nothing: the binding hands Python ``None`` both for an
    undefined name (which prints as nothing in Oxy) and for ``none`` (which prints
    ``none`` in Oxy); the undefined case is by far the common one.
    """
    scalar = _scalar_text(value, none="", float_text=rust_display_float)
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (list, tuple, dict, SeqValue, MapValue)):
        return debug(value)
    if isinstance(value, (TableValue, OutputsValue, LoopItemValue)):
        return str(value)
    return display(to_template(value))


def finalize(value: Any) -> Any:
    """The engine's finalizer: what ``{{ value }}`` prints, where the binding's own
    printing differs from Oxy's (booleans, and lists or maps built in a template).

    A list of numbers only (nested lists too) is left to the engine, which prints
    it as Oxy does (``[100.0, -0.0]``): Python is handed ``[100, 0]``, whole floats
    having become integers on the way, so printing it here would lose the ``.0``.
    Strings, booleans and none inside print Python-style in the engine (``'a'``,
    ``True``), so lists holding them are printed here."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is list and _numbers_only(value):
        return NotImplemented
    if kind is list or kind is tuple or kind is dict:
        return debug(value)
    return NotImplemented


def _numbers_only(items: list[Any]) -> bool:
    for item in items:
        kind = type(item)
        if kind is int or kind is float:
            continue
        if kind is list and _numbers_only(item):
            continue
        return False
    return True


# --- JSON as serde_json writes it (Oxy's ``tojson``) ----------------------------


def _ryu_float(value: float) -> str:
    """serde_json's float text (the ``ryu`` crate): ``1.0``, ``1e16``, ``1e-7``."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    parsed = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(str(d) for d in parsed.digits)
    exponent = int(parsed.exponent)
    length = len(digits)
    point = length + exponent
    if exponent >= 0 and point <= 16:
        body = digits + "0" * exponent + ".0"
    elif 0 < point <= 16:
        body = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        body = "0." + "0" * (-point) + digits
    elif length == 1:
        body = f"{digits}e{point - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{point - 1}"
    return sign + body


def _json_float(value: float) -> str:
    return "null" if math.isnan(value) or math.isinf(value) else _ryu_float(value)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_ESCAPES.update({"\b": "\\b", "\f": "\\f"})


def _json_str(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _JSON_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def to_json(value: Any) -> str:
    """Compact JSON as Oxy's ``tojson`` writes it (``serde_json::to_string``)."""
    scalar = _scalar_text(value, none="null", float_text=_json_float)
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, (MapValue, OutputsValue, dict)):
        keys = list(value)
        return (
            "{"
            + ",".join(f"{_json_str(str(k))}:{to_json(to_template(value[k]))}" for k in keys)
            + "}"
        )
    if isinstance(value, (SeqValue, TableValue, list, tuple)):
        return "[" + ",".join(to_json(to_template(item)) for item in value) + "]"
    if isinstance(value, LoopItemValue):
        return to_json(value["value"])
    return to_json(to_template(value))
