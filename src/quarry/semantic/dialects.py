"""What differs between the warehouses Quarry connects to, as sqlglot expressions.

sqlglot renders most of a query for any dialect; the few things it renders wrongly
or not at all for some of them are spelled out here: truncating a timestamp to a
granularity (weeks start on Monday everywhere), the median, and approximate
distinct counts.
"""

from __future__ import annotations

from sqlglot import exp

from quarry.semantic.errors import SemanticError

# config.yml database types (and airlayer's aliases) -> the sqlglot dialect used.
_DIALECTS = {
    "duckdb": "duckdb",
    "duck": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "postgresql": "postgres",
    "pg": "postgres",
    "redshift": "redshift",
    "rs": "redshift",
    "mysql": "mysql",
    "domo": "mysql",
    "bigquery": "bigquery",
    "bq": "bigquery",
    "snowflake": "snowflake",
    "sf": "snowflake",
    "clickhouse": "clickhouse",
    "ch": "clickhouse",
}
DIALECTS: tuple[str, ...] = tuple(sorted(set(_DIALECTS.values())))


def normalize_dialect(name: str) -> str:
    found = _DIALECTS.get(name.lower())
    if found is None:
        raise SemanticError(
            f"unsupported SQL dialect '{name}' (supported: {', '.join(DIALECTS)})",
            dialect=name,
        )
    return found


def _fn(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _mysql_format(value: exp.Expr, fmt: str) -> exp.Expr:
    formatted = _fn("DATE_FORMAT", value, exp.Literal.string(fmt))
    return exp.Cast(this=formatted, to=exp.DataType.build("DATETIME"))


_CLICKHOUSE = {
    "second": "toStartOfSecond",
    "minute": "toStartOfMinute",
    "hour": "toStartOfHour",
    "day": "toStartOfDay",
    "week": "toMonday",
    "month": "toStartOfMonth",
    "quarter": "toStartOfQuarter",
    "year": "toStartOfYear",
}
_MYSQL_FORMATS = {
    "second": "%Y-%m-%d %H:%i:%s",
    "minute": "%Y-%m-%d %H:%i:00",
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d 00:00:00",
    "month": "%Y-%m-01 00:00:00",
    "year": "%Y-01-01 00:00:00",
}


def truncate(value: exp.Expr, granularity: str, dialect: str, *, is_date: bool) -> exp.Expr:
    """``value`` truncated to the start of its ``granularity`` (weeks start on Monday)."""
    if dialect == "clickhouse":
        return _fn(_CLICKHOUSE[granularity], value)
    if dialect == "mysql":
        if granularity in _MYSQL_FORMATS:
            return _mysql_format(value, _MYSQL_FORMATS[granularity])
        day = _fn("DATE", value)
        if granularity == "week":  # WEEKDAY(): Monday is 0
            start: exp.Expr = exp.DateSub(
                this=day, expression=_fn("WEEKDAY", value), unit=exp.var("DAY")
            )
        else:  # quarter
            year_start = _fn("MAKEDATE", _fn("YEAR", value), exp.Literal.number(1))
            months = exp.Mul(
                this=exp.Paren(
                    this=exp.Sub(this=_fn("QUARTER", value), expression=exp.Literal.number(1))
                ),
                expression=exp.Literal.number(3),
            )
            start = exp.DateAdd(this=year_start, expression=months, unit=exp.var("MONTH"))
        return exp.Cast(this=start, to=exp.DataType.build("DATETIME"))
    if dialect == "bigquery":
        unit: exp.Expr = (
            exp.var("WEEK(MONDAY)") if granularity == "week" else exp.var(granularity.upper())
        )
        if is_date and granularity in ("day", "week", "month", "quarter", "year"):
            return exp.DateTrunc(this=value, unit=unit)  # type: ignore[no-untyped-call]
        return exp.TimestampTrunc(this=value, unit=unit)
    # duckdb, postgres, redshift, snowflake: DATE_TRUNC('unit', x); Monday weeks.
    return exp.TimestampTrunc(this=value, unit=exp.var(granularity.upper()))


def median(value: exp.Expr, dialect: str, member: str) -> exp.Expr:
    """The exact median where the dialect has one; approximate on BigQuery."""
    if dialect == "duckdb":
        return exp.Median(this=value)
    if dialect in ("postgres", "redshift", "snowflake"):
        ordered = exp.Order(expressions=[exp.Ordered(this=value)])
        return exp.WithinGroup(
            this=exp.PercentileCont(this=exp.Literal.number(0.5)), expression=ordered
        )
    if dialect == "clickhouse":
        return _fn("medianExact", value)
    if dialect == "bigquery":
        quantiles = _fn("APPROX_QUANTILES", value, exp.Literal.number(2))
        return exp.Bracket(this=quantiles, expressions=[_fn("OFFSET", exp.Literal.number(1))])
    raise SemanticError(f"measure '{member}': {dialect} has no median function", member=member)


def approx_count_distinct(value: exp.Expr, dialect: str) -> exp.Expr:
    if dialect in ("bigquery", "snowflake"):
        return exp.ApproxDistinct(this=value)
    if dialect == "clickhouse":
        return _fn("uniqHLL12", value)
    return exp.Count(this=exp.Distinct(expressions=[value]))
