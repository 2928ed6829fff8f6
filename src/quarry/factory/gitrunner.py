"""Running git: one subprocess per command, with a timeout, no prompts, no hooks,
and origin credentials that never reach argv, config or logs (see :mod:`quarry.factory.git`
for why the command line rather than pygit2)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from quarry.core.errors import Conflict, QuarryError

log = logging.getLogger(__name__)

BASE_CONFIG = (
    "core.quotepath=off",
    "core.hooksPath=/dev/null",
    "protocol.ext.allow=never",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
)
# A git credential helper answering "get" from the child's environment only.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'printf "username=%s\\npassword=%s\\n" "$QUARRY_GIT_USERNAME" "$QUARRY_GIT_PASSWORD"; }; f'
)
_USERINFO = re.compile(r"(://)[^/@\s]+@")


class GitError(Conflict):
    """A git operation refused (non-fast-forward, rejected push, nothing to commit...)."""

    code = "git_conflict"


class GitFailed(QuarryError):
    """Git itself failed (bad repository, network): not the caller's fault."""

    status_code = 502
    code = "git_failed"


class GitTimeout(QuarryError):
    status_code = 504
    code = "git_timeout"


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass
class GitRunner:
    """How this process runs git: timeout and per-host origin credentials."""

    timeout: float = 120.0
    credentials: Mapping[str, str] = field(default_factory=dict)

    def _secrets(self) -> list[str]:
        out: list[str] = []
        for value in self.credentials.values():
            out.append(value)
            out.extend(p for p in value.split(":", 1) if len(p) >= 4)
        return sorted(set(out), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """Remove credentials and URL user-info from a message before it leaves."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return _USERINFO.sub(r"\1***@", text)

    def _env(self, url: str | None, identity: Identity | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="/bin/false",
            SSH_ASKPASS="/bin/false",
            GIT_SSH_COMMAND=os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
            LC_ALL="C",
            GIT_CONFIG_NOSYSTEM="1",
        )
        if identity is not None:
            env.update(
                GIT_AUTHOR_NAME=identity.name,
                GIT_AUTHOR_EMAIL=identity.email,
                GIT_COMMITTER_NAME=identity.name,
                GIT_COMMITTER_EMAIL=identity.email,
            )
        secret = self.credential_for(url) if url else None
        if secret is not None:
            user, sep, password = secret.partition(":")
            env["QUARRY_GIT_USERNAME"] = user if sep else "x-access-token"
            env["QUARRY_GIT_PASSWORD"] = password if sep else secret
        return env

    def credential_for(self, url: str) -> str | None:
        host = urlsplit(url).hostname if "://" in url else None
        if host is None:
            return None
        return self.credentials.get(host) or self.credentials.get(host.lower())

    def run(
        self,
        cwd: Path | None,
        args: Sequence[str],
        *,
        url: str | None = None,
        identity: Identity | None = None,
        check: bool = True,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        config: list[str] = []
        for item in BASE_CONFIG:
            config += ["-c", item]
        if identity is not None:
            config += ["-c", f"user.name={identity.name}", "-c", f"user.email={identity.email}"]
        if url is not None and self.credential_for(url) is not None:
            config += ["-c", "credential.helper=", "-c", f"credential.helper={CREDENTIAL_HELPER}"]
        command = ["git", *config, *args]
        try:
            # Its own session, so a timeout kills git's children too (ssh, helpers),
            # which would otherwise hold the pipes open past the deadline.
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=self._env(url, identity),
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitFailed(f"cannot run git: {exc}") from None
        try:
            stdout, stderr = proc.communicate(input_text, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GitTimeout(
                f"git {args[0]} did not finish within {self.timeout:g}s", command=args[0]
            ) from None
        done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
        if check and done.returncode != 0:
            raise GitFailed(
                f"git {args[0]} failed: {self.scrub(done.stderr.strip() or done.stdout.strip())}",
                command=args[0],
            )
        return done
