"""Jinja for SQL, text and expressions: sandboxed, strict, and value-binding.

* ``StrictUndefined``: a name that is not defined is an error naming it, never an
  empty string silently spliced into SQL.
* ``sqlquote``: a value as a SQL literal (``'O''Brien'``, ``NULL``, ``TRUE``, ``42``;
  a list becomes a comma-separated list of literals for ``IN (...)``).
* ``param(value)`` / ``value | param``: the value is *bound*, not spliced: the text
  gets a placeholder and the value travels to the database separately. Use it
  wherever the database accepts a parameter (values in ``WHERE``, ``VALUES``...);
  use ``sqlquote`` where it does not (file names, identifiers in some DDL).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from quarry.runtime.connectors.base import BoundSql


class TemplateProblem(Exception):
    """A template failed; ``str()`` is a one-line description for the user."""


def sqlquote(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(sqlquote(v) for v in value)
    if isinstance(value, (date, datetime)):
        value = value.isoformat()
    text = str(value)
    if "\x00" in text:
        raise TemplateProblem("sqlquote: a value may not contain a NUL character")
    return "'" + text.replace("'", "''") + "'"


class _Params:
    def __init__(self) -> None:
        self.token = f"__qp{secrets.token_hex(6)}__"
        self.values: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        with self._lock:
            self.values.append(value)
            return f"{self.token}{len(self.values) - 1}{self.token}"


@pass_context
def _param_filter(context: Context, value: Any) -> str:
    collector = context.get("param")
    if not isinstance(collector, _Params):
        raise TemplateProblem("the param filter is only available in SQL")
    return collector(value)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["sqlquote"] = sqlquote
    env.filters["param"] = _param_filter
    return env


_ENV = _environment()


@lru_cache(maxsize=1024)
def _template(source: str) -> Template:
    return _ENV.from_string(source)


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


def _fail(exc: Exception) -> TemplateProblem:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line else ""
    return TemplateProblem(f"{type(exc).__name__}: {exc}{where}")


def render_text(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _template(source).render(context)
    except (TemplateError, TemplateProblem, TypeError, ValueError) as exc:
        raise _fail(exc) from exc


def render_sql(source: str, context: Mapping[str, Any]) -> BoundSql:
    params = _Params()
    try:
        text = _template(source).render({**context, "param": params})
    except (TemplateError, TemplateProblem, TypeError, ValueError) as exc:
        raise _fail(exc) from exc
    return BoundSql(text=text, params=tuple(params.values), token=params.token)


_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    """A templated value keeping its type: ``"{{ n }}"`` gives the number ``n``.

    A string made of exactly one ``{{ expression }}`` evaluates the expression;
    other strings render as text; lists and mappings are evaluated item by item.
    """
    if isinstance(value, str):
        match = _SINGLE_EXPRESSION.match(value)
        if match is None:
            return render_text(value, context) if "{" in value else value
        return _evaluate_expression(match.group("expr").strip(), context)
    if isinstance(value, list):
        return [evaluate(item, context) for item in value]
    if isinstance(value, dict):
        return {k: evaluate(v, context) for k, v in value.items()}
    return value


_FALSE_TEXT = frozenset({"", "false", "0", "none", "null", "no", "[]", "{}"})


def condition(source: str, context: Mapping[str, Any]) -> bool:
    """A conditional's ``if``: an expression (``x > 3``) or a template (``{{ x > 3 }}``)."""
    if "{{" in source or "{%" in source:
        return render_text(source, context).strip().lower() not in _FALSE_TEXT
    return bool(_evaluate_expression(source.strip(), context))


def _evaluate_expression(source: str, context: Mapping[str, Any]) -> Any:
    try:
        result = _expression(source)(**context)
        if isinstance(result, Undefined):
            result._fail_with_undefined_error()
        return result
    except (TemplateError, TemplateProblem, TypeError, ValueError) as exc:
        raise _fail(exc) from exc
