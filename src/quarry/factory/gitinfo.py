"""What git says about a working copy, recorded beside each revision."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_git_info(root: Path) -> GitInfo:
    if not (root / ".git").exists():
        return GitInfo()
    commit = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    return GitInfo(commit=commit or None, branch=branch or None, dirty=bool(status))
