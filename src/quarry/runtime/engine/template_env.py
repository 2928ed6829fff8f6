"""The minijinja environment, configured as Oxy configures its renderer.

Oxy (``crates/core/src/execute/renderer.rs``) starts from ``Environment::new()``
(lenient undefined: an undefined name prints as nothing and is false in an ``if``;
minijinja's built-in filters, tests and globals ``range``, ``dict``, ``namespace``,
``debug``) and adds the global ``now(fmt=, utc=)`` and the filters ``sqlquote`` and
``tojson``. Workflow and app fields (SQL, formatter templates, prompts, export and
cache paths) render with ``render_str``, whose template name ``<string>`` has no
extension, so nothing is auto-escaped; Quarry's cached templates never escape either.

The Python binding adds minijinja-contrib (``truncate``, ``pluralize``,
``cycler``...) and Python-style methods (``'a'.upper()``); Oxy has neither, so both
are removed. There is no loader: ``include``/``import``/``extends`` find nothing.

Quarry adds ``param(value)`` / ``value | param`` (bind a value instead of splicing it)
and the limits: ``fuel`` bounds the work of one render (loop steps and the size of
the strings it builds), and the output may not exceed :data:`MAX_OUTPUT_CHARS`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from typing import Any

from minijinja import Environment, pass_state
from minijinja._lowlevel import State

from quarry.runtime.engine import template_values as tv
from quarry.runtime.engine.template_clock import make_now

MAX_FUEL = 5_000_000
"""Default engine steps one render may take (a step of a loop costs about 3; building a
string costs about one per 32 characters): roughly 0.1 s of work at most."""
MAX_OUTPUT_CHARS = 10_000_000
"""Default longest text one render may produce."""
TEMPLATE_CACHE_SIZE = 1024

PARAMS_NAME = "__quarry_params__"
"""Where ``render_sql`` puts its parameter collector in the context."""

_CONTRIB_FILTERS = (
    "pluralize",
    "filesizeformat",
    "truncate",
    "striptags",
    "wordcount",
    "wordwrap",
    "datetimeformat",
    "timeformat",
    "dateformat",
    "random",
    "format",
)
_CONTRIB_GLOBALS = ("cycler", "joiner", "lipsum", "randrange")


class ParamOutsideSql(ValueError):
    pass


class UnknownStatement(ValueError):
    """A statement Oxy's minijinja does not know (its message is the user's)."""


_LOOP_CONTROL = re.compile(r"\{%[-+]?\s*(break|continue)\s*[-+]?%\}")
_NOT_CODE = re.compile(
    r"\{%[-+]?\s*raw\s*[-+]?%\}.*?\{%[-+]?\s*endraw\s*[-+]?%\}|\{#.*?#\}", re.DOTALL
)


def refuse_loop_controls(source: str) -> None:
    """Oxy's minijinja is built without the ``loop_controls`` feature, so
    ``{% break %}`` and ``{% continue %}`` are syntax errors there; the Python binding
    enables it. Quarry refuses them as Oxy does (outside ``raw`` blocks and comments),
    rather than running a template Oxy cannot."""
    if "break" not in source and "continue" not in source:
        return
    code = _NOT_CODE.sub(lambda m: "\n" * m.group(0).count("\n"), source)
    found = _LOOP_CONTROL.search(code)
    if found is not None:
        line = code.count("\n", 0, found.start()) + 1
        raise UnknownStatement(
            f"SyntaxError: unknown statement {found.group(1)} (line {line}; "
            "Oxy's templates have no loop controls)"
        )


def _one_argument(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args:
        raise ValueError(f"{name} takes no arguments")
    if kwargs:
        raise ValueError(f"{name} has no argument {sorted(kwargs)[0]!r}")


def _sqlquote_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    _one_argument("sqlquote", args, kwargs)
    return sqlquote(value)


def sqlquote(value: Any) -> str:
    """A value as a SQL string literal, exactly as Oxy's ``sqlquote``: its text in
    single quotes, each ``'`` doubled (``'O''Brien'``, ``'42'``, ``'true'``).

    Quarry refuses a NUL character (drivers would cut the statement there).
    """
    text = tv.display(tv.to_template(value))
    if "\x00" in text:
        raise ValueError("sqlquote: a value may not contain a NUL character")
    return "'" + text.replace("'", "''") + "'"


def _tojson_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    _one_argument("tojson", args, kwargs)
    return tv.to_json(tv.to_template(value))


def _bind(state: State, value: Any) -> str:
    collector = state.lookup(PARAMS_NAME)
    if collector is None or not callable(collector):
        raise ParamOutsideSql("param binds values in SQL only (execute_sql), not in text")
    return str(collector(tv.from_template(value)))


@pass_state
def _param_filter(state: State, value: Any, *args: Any, **kwargs: Any) -> str:
    _one_argument("param", args, kwargs)
    return _bind(state, value)


@pass_state
def _param_function(state: State, *args: Any, **kwargs: Any) -> str:
    if len(args) != 1 or kwargs:
        raise ValueError("param takes exactly one value: param(value)")
    return _bind(state, args[0])


def _no_auto_escape(_name: str) -> None:
    return None


def build_environment(*, strict: bool) -> Environment:
    env = Environment(
        undefined_behavior="strict" if strict else "lenient",
        fuel=MAX_FUEL,
        pycompat=False,
        keep_trailing_newline=False,
        finalizer=tv.finalize,
        auto_escape_callback=_no_auto_escape,
        debug=True,  # errors name the undefined variable
    )
    for name in _CONTRIB_FILTERS:
        env.remove_filter(name)
    for name in _CONTRIB_GLOBALS:
        env.remove_global(name)
    env.add_filter("sqlquote", _sqlquote_filter)
    env.add_filter("tojson", _tojson_filter)
    env.add_filter("param", _param_filter)
    env.add_global("now", make_now())
    env.add_global("param", _param_function)
    return env


class TemplateCache:
    """Compiled templates by source text, least recently used evicted first, with
    the names each one reads (only those are handed to the engine at render time,
    so a step with many large outputs in scope does not pay for the ones unused)."""

    def __init__(self, env: Environment, size: int = TEMPLATE_CACHE_SIZE) -> None:
        self.env = env
        self._size = size
        self._templates: OrderedDict[str, tuple[str, frozenset[str]]] = OrderedDict()
        self._expressions: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def template(self, source: str) -> tuple[str, frozenset[str]]:
        """The registered name of ``source`` and the names it reads."""
        with self._lock:
            hit = self._templates.get(source)
            if hit is not None:
                self._templates.move_to_end(source)
                return hit
        refuse_loop_controls(source)
        name = f"quarry-{next(self._counter)}"
        self.env.add_template(name, source)  # raises TemplateError on bad syntax
        entry = (name, frozenset(self.env.undeclared_variables_in_template(name)))
        with self._lock:
            if source in self._templates:  # another thread compiled it meanwhile
                self.env.remove_template(name)
                return self._templates[source]
            self._templates[source] = entry
            while len(self._templates) > self._size:
                _old, (old_name, _names) = self._templates.popitem(last=False)
                self.env.remove_template(old_name)
        return entry

    def expression_names(self, source: str) -> frozenset[str]:
        """The names an expression reads."""
        with self._lock:
            hit = self._expressions.get(source)
            if hit is not None:
                self._expressions.move_to_end(source)
                return hit
        names = frozenset(self.env.undeclared_variables_in_str("{{ (" + source + ") }}"))
        with self._lock:
            self._expressions[source] = names
            while len(self._expressions) > self._size:
                self._expressions.popitem(last=False)
        return names
