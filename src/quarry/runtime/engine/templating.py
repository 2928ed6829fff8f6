"""Templates for SQL, text and expressions: Oxy's engine, sandboxed, value-binding.

Rendering uses minijinja (the engine Oxy uses), configured as Oxy configures it
(:mod:`quarry.runtime.engine.template_env`), so an Oxy template gives the same text:

* an undefined name prints as nothing and is false in an ``if`` (Oxy's lenient
  default); ``none > 15`` is false, not an error;
* ``sqlquote`` quotes any value as Oxy does (``'O''Brien'``, ``'42'``, ``'true'``),
  ``tojson`` writes compact JSON, ``now(fmt=, utc=)`` gives the time;
* ``<loop>.value`` is the current value inside a ``loop_sequential``.

Strict mode (``--strict-templates``, ``QUARRY_STRICT_TEMPLATES``, or
``defaults: {strict_templates: true}`` in ``config.yml``) makes an undefined name an
error naming it. Quarry's extra, ``param(value)`` / ``value | param``, *binds* a
value instead of splicing it into SQL: the text gets a marker and the value travels
to the database separately.

Templates are sandboxed: they see plain values and read-only views
(:mod:`quarry.runtime.engine.template_values`), never Python objects; there is no
file or network access; one render's work and output are bounded.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from minijinja import Environment, TemplateError

from quarry.core.errors import NotFound
from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.engine import template_env
from quarry.runtime.engine.template_env import (
    MAX_FUEL,
    MAX_OUTPUT_CHARS,
    PARAMS_NAME,
    TemplateCache,
    build_environment,
)
from quarry.runtime.engine.template_values import from_template, to_template_context
from quarry.runtime.source import RevisionSource

__all__ = [
    "TemplateProblem",
    "condition",
    "evaluate",
    "render_sql",
    "render_text",
    "set_default_strict",
    "set_limits",
    "sqlquote",
    "strict_templates",
    "workspace_strict",
]


class TemplateProblem(Exception):
    """A template failed; ``str()`` is a one-line description for the user."""


def sqlquote(value: Any) -> str:
    """A value as a SQL string literal, exactly as Oxy's ``sqlquote`` filter."""
    try:
        return template_env.sqlquote(value)
    except ValueError as exc:
        raise TemplateProblem(str(exc)) from exc


# --- strict mode -------------------------------------------------------------------

_default_strict = False
_strict: ContextVar[bool | None] = ContextVar("quarry_strict_templates", default=None)


def set_default_strict(enabled: bool) -> None:
    """The process-wide mode (``--strict-templates`` / ``QUARRY_STRICT_TEMPLATES``)."""
    global _default_strict
    _default_strict = enabled


_limits = {"fuel": MAX_FUEL, "output": MAX_OUTPUT_CHARS}


def set_limits(*, fuel: int = MAX_FUEL, max_output_chars: int = MAX_OUTPUT_CHARS) -> None:
    """The process-wide limits of one render (``QUARRY_TEMPLATE_FUEL``,
    ``QUARRY_TEMPLATE_MAX_OUTPUT_CHARS``)."""
    if fuel < 1 or max_output_chars < 1:
        raise ValueError("template limits must be positive")
    _limits.update(fuel=fuel, output=max_output_chars)
    for cache in (_LENIENT, _STRICT):
        cache.env.fuel = fuel


@contextmanager
def strict_templates(enabled: bool | None) -> Iterator[None]:
    """Renders inside the block are strict when ``enabled`` (a workspace's setting);
    ``None`` or False changes nothing (an enclosing block or the process-wide mode
    still applies: strictness is opt-in at every level)."""
    if not enabled:
        yield
        return
    token = _strict.set(True)
    try:
        yield
    finally:
        _strict.reset(token)


def workspace_strict(source: RevisionSource) -> bool:
    """``defaults: {strict_templates: true}`` in the revision's ``config.yml``.

    A Quarry key in a mapping Oxy reads without ``deny_unknown_fields``, so Oxy
    ignores it and the same file still works there.
    """
    try:
        defaults = source.config.defaults
    except NotFound:
        return False
    return bool(defaults is not None and defaults.strict_templates)


def _is_strict(strict: bool | None) -> bool:
    if strict is not None:
        return strict
    return bool(_strict.get()) or _default_strict


_LENIENT = TemplateCache(build_environment(strict=False))
_STRICT = TemplateCache(build_environment(strict=True))


# --- errors ------------------------------------------------------------------------


def _problem(exc: Exception, strict: bool) -> TemplateProblem:
    if isinstance(exc, TemplateError):
        detail = exc.detail or exc.message
        if "out of fuel" in detail:
            detail = (
                f"the template does too much work (more than {_limits['fuel']:,} steps; "
                "a loop too long or a string too large)"
            )
        elif exc.kind == "UndefinedError" and strict:
            detail = f"{detail} (strict templates: every name must be defined)"
        where = f" (line {exc.line})" if exc.line else ""
        return TemplateProblem(f"{exc.kind}: {detail}{where}")
    if isinstance(exc, template_env.UnknownStatement):
        return TemplateProblem(str(exc))
    if isinstance(exc, AttributeError):
        return TemplateProblem(f"not allowed in a template: {exc}")
    return TemplateProblem(f"{type(exc).__name__}: {exc}")


def _checked(text: str) -> str:
    if len(text) > _limits["output"]:
        raise TemplateProblem(
            f"the template's output is {len(text):,} characters, over the limit of "
            f"{_limits['output']:,}"
        )
    return text


def _render(
    source: str, context: Mapping[str, Any], strict: bool | None, extra: dict[str, Any]
) -> str:
    strict_now = _is_strict(strict)
    cache = _STRICT if strict_now else _LENIENT
    try:
        name, used = cache.template(source)
        names = to_template_context(context, used)
        names.update(extra)
        text = cache.env.render_template(name, **names)
    except Exception as exc:  # the engine re-raises what a filter or method raised
        raise _problem(exc, strict_now) from exc
    return _checked(text)


# --- rendering ---------------------------------------------------------------------


def _plain(source: str) -> str:
    """A text without a tag renders as itself less one final newline (minijinja's
    default, ``keep_trailing_newline`` off, as in Oxy)."""
    if source.endswith("\r\n"):
        return source[:-2]
    return source[:-1] if source.endswith("\n") else source


def render_text(source: str, context: Mapping[str, Any], *, strict: bool | None = None) -> str:
    if "{" not in source:
        return _plain(source)
    return _render(source, context, strict, {})


class _Params:
    """Collects ``param`` values; the template sees a callable and nothing else."""

    __slots__ = ("_lock", "_token", "_values")

    def __init__(self) -> None:
        self._token = f"__qp{secrets.token_hex(6)}__"
        self._values: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        with self._lock:
            self._values.append(value)
            return f"{self._token}{len(self._values) - 1}{self._token}"

    def bound(self, text: str) -> BoundSql:
        return BoundSql(text=text, params=tuple(self._values), token=self._token)


def render_sql(source: str, context: Mapping[str, Any], *, strict: bool | None = None) -> BoundSql:
    params = _Params()
    if "{" not in source:
        return params.bound(_plain(source))
    return params.bound(_render(source, context, strict, {PARAMS_NAME: params}))


_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


def evaluate(value: Any, context: Mapping[str, Any], *, strict: bool | None = None) -> Any:
    """A templated value keeping its type: ``"{{ n }}"`` gives the number ``n``.

    A string made of exactly one ``{{ expression }}`` evaluates the expression (as
    Oxy's ``eval_expression``; an undefined name gives None unless strict); other
    strings render as text; lists and mappings are evaluated item by item.
    """
    if isinstance(value, str):
        match = _SINGLE_EXPRESSION.match(value)
        if match is None:
            return render_text(value, context, strict=strict) if "{" in value else value
        return _evaluate_expression(match.group("expr").strip(), context, strict)
    if isinstance(value, list):
        return [evaluate(item, context, strict=strict) for item in value]
    if isinstance(value, dict):
        return {k: evaluate(v, context, strict=strict) for k, v in value.items()}
    return value


_FALSE_TEXT = frozenset({"", "false", "0", "none", "null", "no", "[]", "{}"})


def condition(source: str, context: Mapping[str, Any], *, strict: bool | None = None) -> bool:
    """A conditional's ``if``: an expression (``x > 3``) or a template (``{{ x > 3 }}``)."""
    if "{{" in source or "{%" in source:
        text = render_text(source, context, strict=strict)
        return text.strip().lower() not in _FALSE_TEXT
    return bool(_evaluate_expression(source.strip(), context, strict))


def _evaluate_expression(source: str, context: Mapping[str, Any], strict: bool | None) -> Any:
    strict_now = _is_strict(strict)
    cache = _STRICT if strict_now else _LENIENT
    env: Environment = cache.env
    try:
        names = to_template_context(context, cache.expression_names(source))
        result = env.eval_expr(source, **names)
        # The binding returns an undefined result as None, even when strict.
        if result is None and strict_now and not env.eval_expr(f"({source}) is defined", **names):
            raise TemplateProblem(
                f"UndefinedError: `{source}` is undefined "
                "(strict templates: every name must be defined)"
            )
    except TemplateProblem:
        raise
    except Exception as exc:  # the engine re-raises what a filter or method raised
        raise _problem(exc, strict_now) from exc
    return from_template(result)
