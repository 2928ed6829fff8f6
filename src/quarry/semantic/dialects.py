"""What differs between the warehouses Quarry connects to, as sqlglot expressions.

sqlglot renders most of a query for any dialect; the few things it renders wrongly
or not at all for some of them are spelled out here: truncating a timestamp to a
granularity (weeks start on Monday everywhere), converting it to a time zone, the
median, and approximate distinct counts.
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


def to_timezone(value: exp.Expr, zone: str, dialect: str) -> exp.Expr:
    """``value`` (a moment, UTC when it carries no zone) as wall-clock time in ``zone``.

    airlayer's expressions per dialect (docs/dialects.md); ``zone`` is an IANA name
    the compiler has checked, so it is written as a literal. The result carries no
    zone, so truncating it gives local days, weeks, months.
    """
    tz = exp.Literal.string(zone)
    if dialect in ("postgres", "redshift"):
        return exp.Paren(
            this=exp.AtTimeZone(
                this=exp.Cast(this=value, to=exp.DataType.build("TIMESTAMPTZ")), zone=tz
            )
        )
    if dialect == "duckdb":
        return _fn("TIMEZONE", tz, exp.Cast(this=value, to=exp.DataType.build("TIMESTAMPTZ")))
    if dialect == "mysql":
        return _fn("CONVERT_TZ", value, exp.Literal.string("UTC"), tz)
    if dialect == "bigquery":
        # sqlglot spells TIMESTAMPTZ as BigQuery's TIMESTAMP (its TIMESTAMP is DATETIME)
        return _fn("DATETIME", exp.Cast(this=value, to=exp.DataType.build("TIMESTAMPTZ")), tz)
    if dialect == "snowflake":
        ntz = exp.Cast(this=value, to=exp.DataType.build("TIMESTAMP_NTZ", dialect="snowflake"))
        return _fn("CONVERT_TIMEZONE", exp.Literal.string("UTC"), tz, ntz)
    if dialect == "clickhouse":
        return _fn("toTimeZone", value, tz)
    raise SemanticError(f"time zones are not supported on {dialect}", dialect=dialect)


def truncate(
    value: exp.Expr, granularity: str, dialect: str, *, is_date: bool, local: bool = False
) -> exp.Expr:
    """``value`` truncated to the start of its ``granularity`` (weeks start on Monday).

    ``local``: ``value`` is wall-clock time from :func:`to_timezone` (a BigQuery
    ``DATETIME``, which ``TIMESTAMP_TRUNC`` does not take)."""
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
        if local:
            return exp.DatetimeTrunc(this=value, unit=unit)
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
