"""``quarry query`` and ``quarry semantic catalog``: the semantic layer from a shell.

Both read a compiled revision from the state database and object store (like
``quarry schedules``), so they work wherever ``quarry serve`` would: against the
local ``.quarry`` of a working copy or a fleet's PostgreSQL and S3. ``quarry query``
compiles exactly as the HTTP API does (same model, same bound parameters) and runs
the SQL here, through the runtime connectors.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from quarry.cli_output import make_console
from quarry.core.errors import BadRequest, QuarryError

console = make_console(stderr=True)
out = make_console()

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="A stored revision (default: the current one).")
]

# Longest operators first, so ">=" is not read as ">" followed by "=x".
_FILTER = re.compile(r"^\s*(?P<field>[\w.]+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.*)$")
_LIST_FILTER = re.compile(r"^\s*(?P<field>[\w.]+)\s+(?P<op>not\s+in|in)\s+(?P<values>.*)$", re.I)
_OPS = {"=": "eq", "!=": "neq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def _value(raw: str) -> Any:
    """A number or boolean if it reads as JSON, else the text itself."""
    text = raw.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text.strip("'\"")
    return value if isinstance(value, (int, float, bool)) or value is None else text


def parse_filter(spec: str) -> dict[str, Any]:
    """``field>=x``, ``field!=x``, ``field in a,b``, ``field not in a,b``."""
    listed = _LIST_FILTER.match(spec)
    if listed is not None:
        op = "not_in" if listed["op"].lower().startswith("not") else "in"
        values = [_value(v) for v in listed["values"].split(",") if v.strip()]
        return {"field": listed["field"], "op": op, "values": values}
    found = _FILTER.match(spec)
    if found is None:
        raise BadRequest(
            f"--filter takes field<op>value with op one of = != > >= < <= (or 'field in a,b'), "
            f"got {spec!r}",
            parameter="--filter",
        )
    return {"field": found["field"], "op": _OPS[found["op"]], "value": _value(found["value"])}


def parse_time(spec: str) -> dict[str, Any]:
    """``orders.order_date:month`` (or no granularity)."""
    dimension, _, granularity = spec.partition(":")
    if not dimension:
        raise BadRequest(f"--time takes dimension[:granularity], got {spec!r}", parameter="--time")
    return {"dimension": dimension, "granularity": granularity or None}


def parse_order(spec: str) -> dict[str, Any]:
    """``orders.revenue:desc`` (ascending without a direction)."""
    field, _, direction = spec.partition(":")
    return {"field": field, "direction": direction or "asc"}


def parse_params(specs: list[str]) -> dict[str, Any]:
    """``--param name=value`` pairs; a value that reads as JSON (``5``, ``true``,
    ``["2024-01-01", "2024-03-31"]``) is that value, anything else is text."""
    params: dict[str, Any] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        if not sep or not name.strip():
            raise BadRequest(f"--param is name=value, not {spec!r}", parameter="param")
        try:
            params[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[name.strip()] = raw
    return params


def build_body(
    topic: str | None,
    measures: list[str],
    dimensions: list[str],
    times: list[str],
    filters: list[str],
    orders: list[str],
    limit: int | None,
    offset: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": topic,
        "measures": measures,
        "dimensions": dimensions,
        "time_dimensions": [parse_time(t) for t in times],
        "filters": [parse_filter(f) for f in filters],
        "orders": [parse_order(o) for o in orders],
        "limit": limit,
        "offset": offset,
    }
    return {k: v for k, v in body.items() if v not in (None, [])}


def _open(settings_for: Any, workspace: str, revision: str | None) -> tuple[Any, Any, Any, str]:
    from quarry.node.services import build_services
    from quarry.runtime.semantic.service import SemanticService

    settings = settings_for(None)
    svc = build_services(settings)
    ws = svc.catalog.workspace(settings.tenant, workspace, fresh=True)
    rev = svc.catalog.resolve(ws, revision)
    sem = SemanticService(svc.catalog, svc.store, cache_dir=svc.paths.cache_dir, ttl=0)
    return svc, sem, ws, rev


def _print_table(table: Any, fmt: str) -> None:
    from quarry.runtime.semantic.formats import encode, table_rows

    if fmt == "csv":
        sys.stdout.write(encode(table, "csv").decode())
        return
    if fmt == "json":
        out.print_json(json.dumps(table_rows(table)))
        return
    shown = Table(*table.column_names)
    for row in table_rows(table):
        shown.add_row(*("" if v is None else str(v) for v in row.values()))
    out.print(shown)
    console.print(f"{table.num_rows} row(s)")


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    semantic = typer.Typer(help="The semantic layer: the catalog of topics, views and members.")
    app.add_typer(semantic, name="semantic")

    @app.command()
    def query(
        workspace: WorkspaceOpt,
        topic: Annotated[str | None, typer.Option("--topic", "-t", help="Topic.")] = None,
        measure: Annotated[
            list[str] | None, typer.Option("--measure", "-m", help="view.measure (repeatable).")
        ] = None,
        dimension: Annotated[
            list[str] | None,
            typer.Option("--dimension", "-d", help="view.dimension (repeatable)."),
        ] = None,
        time: Annotated[
            list[str] | None,
            typer.Option("--time", help="view.dimension:granularity, e.g. orders.date:month."),
        ] = None,
        filter_: Annotated[
            list[str] | None,
            typer.Option("--filter", "-f", help="'field>=x', 'field!=x', 'field in a,b'."),
        ] = None,
        order: Annotated[
            list[str] | None, typer.Option("--order", help="field[:asc|desc] (repeatable).")
        ] = None,
        limit: Annotated[int | None, typer.Option("--limit", min=0)] = None,
        offset: Annotated[int | None, typer.Option("--offset", min=0)] = None,
        sql: Annotated[bool, typer.Option("--sql", help="Print the SQL and params only.")] = False,
        fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
        revision: RevisionOpt = None,
        saved: Annotated[
            str | None, typer.Option("--saved", help="Run this saved query (*.query.yml).")
        ] = None,
        step: Annotated[
            str | None, typer.Option("--step", help="The saved query's step (if several).")
        ] = None,
        param: Annotated[
            list[str] | None,
            typer.Option(
                "--param",
                "-p",
                help="A --saved query's parameter, name=value (value read as JSON if it is).",
            ),
        ] = None,
    ) -> None:
        """Ask a semantic query: measures by dimensions of a topic, as a table."""
        from quarry.runtime.apps.values import json_value
        from quarry.semantic import SemanticQuery

        if fmt not in ("table", "csv", "json"):
            raise fail(BadRequest(f"--format is table, csv or json, not {fmt!r}"))
        asked = (topic, measure, dimension, time, filter_, order, limit, offset)
        if saved is not None and any(a not in (None, []) for a in asked):
            raise fail(BadRequest("--saved runs the saved query as it is: give no other query"))
        if step is not None and saved is None:
            raise fail(BadRequest("--step names a step of a --saved query"))
        if param and saved is None:
            raise fail(BadRequest("--param gives a parameter of a --saved query"))
        try:
            params = parse_params(param or [])
        except BadRequest as exc:
            raise fail(exc) from None
        try:
            semantic_query = None
            if saved is None:
                body = build_body(
                    topic,
                    measure or [],
                    dimension or [],
                    time or [],
                    filter_ or [],
                    order or [],
                    limit,
                    offset,
                )
                semantic_query = SemanticQuery.from_request(body)
            svc, sem, ws, rev = _open(settings_for, workspace, revision)
            principal = {"tenant": svc.settings.tenant, "subject": "cli"}
            try:
                if semantic_query is None:
                    assert saved is not None
                    semantic_query = sem.saved_query(ws, rev, saved, step, params)
                prepared = sem.prepare(ws, rev, semantic_query, principal)
                if sql:
                    out.print(prepared.bound.display(), markup=False, highlight=False)
                    bound = [json_value(p) for p in prepared.compiled.params]
                    out.print(f"-- params: {json.dumps(bound)}", markup=False, highlight=False)
                    out.print(
                        f"-- datasource: {prepared.target.datasource} "
                        f"({prepared.target.dialect}), revision {rev}",
                        markup=False,
                        highlight=False,
                    )
                    return
                table = sem.execute(ws, rev, prepared)
            finally:
                sem.close()
                svc.close()
        except QuarryError as exc:
            raise fail(exc) from exc
        _print_table(table, fmt)

    @semantic.command("catalog")
    def catalog(
        workspace: WorkspaceOpt,
        revision: RevisionOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Topics, views and their members with types and descriptions."""
        try:
            svc, sem, ws, rev = _open(settings_for, workspace, revision)
            try:
                document = json.loads(sem.models.catalog_document(ws, rev).body)
            finally:
                sem.close()
                svc.close()
        except QuarryError as exc:
            raise fail(exc) from exc
        if as_json:
            out.print_json(json.dumps(document))
            return
        _print_catalog(document)


def _print_catalog(document: dict[str, Any]) -> None:
    """A table per topic (and one of the views outside any topic), tolerant of the
    catalog's exact shape: each entry shows its name, type and description."""
    for section in ("topics", "views"):
        entries = document.get(section) or []
        if not entries:
            continue
        table = Table("name", "kind", "type", "description", title=section)
        for entry in entries:
            table.add_row(
                str(entry.get("name", "")), section[:-1], "", str(entry.get("description") or "")
            )
            for member in _members(entry):
                table.add_row(
                    f"  {member.get('name', '')}",
                    str(member.get("kind", "")),
                    str(member.get("type", "")),
                    str(member.get("description") or ""),
                )
        out.print(table)


def _members(entry: dict[str, Any]) -> list[dict[str, Any]]:
    members = entry.get("members")
    if isinstance(members, list):
        return [m for m in members if isinstance(m, dict)]
    found: list[dict[str, Any]] = []
    for kind in ("dimensions", "measures"):
        for m in entry.get(kind) or []:
            if isinstance(m, dict):
                found.append({"kind": kind[:-1], **m})
    return found
