"""Schedule and monitor files: validated with positioned errors, unknown keys refused."""

from __future__ import annotations

from quarry.definitions import parse_definition
from quarry.definitions.kinds import Kind, classify_path
from quarry.definitions.references import RefKind
from tests.unit.definitions.conftest import problems_of


def test_kinds_come_from_the_file_name() -> None:
    assert classify_path("ops/nightly.schedule.yml") is Kind.SCHEDULE
    assert classify_path("ops/level.monitor.yaml") is Kind.MONITOR


def test_schedule_parses_with_its_references() -> None:
    parsed = parse_definition(
        "ops/nightly.schedule.yml",
        b"target:\n  app: apps/sales.app.yml\ncron: '0 6 * * 1-5'\ntimezone: Europe/Berlin\n",
    )
    assert parsed.name == "ops/nightly"
    assert parsed.body["overlap"] == "skip" and parsed.body["enabled"] is True
    [ref] = parsed.refs
    assert (ref.kind, ref.target, ref.line, ref.column) == (RefKind.APP, "apps/sales.app.yml", 2, 8)


def test_bad_cron_time_zone_and_unknown_key_are_positioned() -> None:
    assert problems_of(
        "s.schedule.yml",
        """\
        target:
          workflow: w.workflow.yml
        cron: '61 * * * *'
        timezone: Mars/Olympus
        retries: 3
        """,
    ) == [
        "s.schedule.yml:3:7: cron: invalid cron expression '61 * * * *'",
        "s.schedule.yml:4:11: timezone: unknown time zone 'Mars/Olympus' "
        "(an IANA name like 'Europe/Berlin')",
        "s.schedule.yml:5:1: unknown field 'retries'",
    ]


def test_cron_field_count_and_target_shape() -> None:
    problems = problems_of(
        "s.schedule.yml",
        """\
        target:
          workflow: a.workflow.yml
          app: b.app.yml
        cron: '* * *'
        overlap: sometimes
        """,
    )
    assert problems[0] == "s.schedule.yml:2:3: target: give exactly one of 'workflow' or 'app'"
    assert problems[1].startswith("s.schedule.yml:4:7: cron: cron expression '* * *' has 3 fields")
    assert problems[2].startswith("s.schedule.yml:5:10: overlap:")


def test_monitor_parses_and_rejects_unknown_condition() -> None:
    parsed = parse_definition(
        "m.monitor.yml",
        b"query: {database: wh, sql: select 1}\n"
        b"condition: {type: threshold, operator: '>=', value: 3}\n"
        b"cron: '*/5 * * * *'\nnotify: [{url_env: HOOK, format: slack}]\n",
    )
    [ref] = parsed.refs
    assert (ref.kind, ref.target) == (RefKind.DATABASE, "wh")
    assert problems_of(
        "m.monitor.yml",
        """\
        query: {database: wh, sql: select 1}
        condition: {type: anomaly}
        cron: '* * * * *'
        notify: [{url: http://x}]
        """,
    ) == [
        "m.monitor.yml:2:19: unknown type 'anomaly' (expected one of: 'threshold', 'change')",
        "m.monitor.yml:4:10: missing required field 'url_env'",
        "m.monitor.yml:4:11: unknown field 'url'",
    ]
