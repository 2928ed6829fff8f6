"""A small reader and linter for ``deploy/Containerfile``: the image cannot be built on
these machines (no base image pulls, no engine), so its instructions are checked as
text — by hadolint when it is installed, and always by the rules below, which are the
promises docs/deployment.md makes about the image."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONTAINERFILE = REPO / "deploy" / "Containerfile"
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
DATA_VOLUME = "/var/lib/quarry"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions by stage, continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = lineno
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        pending = []
        instruction = Instruction(start, keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, start))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    """The ``ENV`` a stage sets (``KEY=value`` form), as a process would see it."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            key, sep, value = word.partition("=")
            if not sep:
                raise ValueError(f"line {instruction.line}: use ENV KEY=value, not {word!r}")
            env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m[1], ""), value)
    return env


def _exec_form(instruction: Instruction) -> list[str] | None:
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _pinned(image: str, stage_names: set[str]) -> bool:
    if image in stage_names or "@sha256:" in image:
        return True
    _, _, tag = image.rpartition("/")[2].partition(":")
    return bool(tag) and tag != "latest" and re.search(r"\d", tag) is not None


def lint(text: str, repo: Path = REPO) -> list[str]:
    """Every broken promise as ``line N: ...`` (empty: the file keeps them all)."""
    problems: list[str] = []
    stages = parse(text)
    if not stages:
        return ["no FROM instruction"]
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if not _pinned(stage.base, names):
            problems.append(f"line {stage.line}: FROM {stage.base} is not pinned by tag/digest")
        for add in stage.all("ADD"):
            problems.append(f"line {add.line}: ADD (use COPY; never fetch URLs at build time)")
        for copy in stage.all("COPY"):
            words = [w for w in copy.args.split() if not w.startswith("--")]
            if any(w.startswith("--from") for w in copy.args.split()):
                continue
            for source in words[:-1]:
                if not (repo / source).exists():
                    problems.append(f"line {copy.line}: COPY source {source} does not exist")
    syncs = [i for s in stages for i in s.all("RUN") if "uv sync" in i.args]
    if not syncs:
        problems.append("no RUN uv sync: the image must install from the lockfile")
    for run in syncs:
        for flag in ("--frozen", "--no-dev", "--compile-bytecode"):
            if flag not in run.args.split():
                problems.append(f"line {run.line}: uv sync without {flag}")

    final = stages[-1]
    users = final.all("USER")
    starts = final.all("ENTRYPOINT") + final.all("CMD")
    if not users:
        problems.append("final stage: no USER (it would run as root)")
    else:
        user = users[-1]
        if user.args.split(":")[0] in {"root", "0"}:
            problems.append(f"line {user.line}: USER {user.args} is root")
        for start in starts:
            if start.line < user.line:
                problems.append(f"line {start.line}: {start.keyword} before the non-root USER")
    checks = final.all("HEALTHCHECK")
    if not checks or "CMD" not in checks[-1].args:
        problems.append("final stage: no HEALTHCHECK ... CMD")
    if not final.all("EXPOSE"):
        problems.append("final stage: no EXPOSE")
    entry = final.all("ENTRYPOINT")
    form = _exec_form(entry[-1]) if entry else None
    if form is None:
        problems.append("final stage: ENTRYPOINT missing or not in exec (JSON) form")
    elif "tini" not in form[0] or not any(a.endswith("entrypoint.sh") for a in form):
        problems.append(f"line {entry[-1].line}: PID 1 must be tini running entrypoint.sh")
    volumes = " ".join(v.args for v in final.all("VOLUME"))
    if DATA_VOLUME not in volumes:
        problems.append(f"final stage: no VOLUME {DATA_VOLUME} (the only writable path)")
    env = env_of(final)
    for key in ("HOME", "TMPDIR", "QUARRY_DATA_DIR", "QUARRY_WORKSPACES_DIR"):
        if not env.get(key, "").startswith(DATA_VOLUME):
            problems.append(f"final stage: ENV {key} must lie on {DATA_VOLUME} (read-only root)")
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        problems.append("final stage: ENV PYTHONDONTWRITEBYTECODE=1 (read-only root)")
    return problems
