#!/usr/bin/env python3
"""Render a provisioning template from ``deploy/``: ``${NAME}`` and ``${NAME:-default}``
are replaced from the environment (standard library only, so a CI job or an operator
can run it anywhere).

    QUARRY_IMAGE=ghcr.io/acme/quarry:1.4 QUARRY_MIN_REPLICAS=1 \\
        python deploy/render.py deploy/knative/factory.yaml | kubectl apply -f -

A variable without a default that is unset (or empty), or a value that would break
the YAML it lands in (a newline or a double quote), is an error naming the file,
line and variable; nothing is printed then, so a half-rendered manifest never
reaches the platform.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}")
FORBIDDEN = ("\n", "\r", '"')


class RenderError(ValueError):
    """One message per problem, each as ``file:line: ...``."""


def render(text: str, env: Mapping[str, str], *, source: str = "<template>") -> str:
    problems: list[str] = []
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):

        def substitute(match: re.Match[str], lineno: int = lineno) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name) or None
            if value is None:
                if default is None:
                    problems.append(
                        f"{source}:{lineno}: ${{{name}}} is not set (and has no default)"
                    )
                    return ""
                value = default
            bad = [c for c in FORBIDDEN if c in value]
            if bad:
                problems.append(
                    f"{source}:{lineno}: ${{{name}}} contains {bad[0]!r}, "
                    "which would break the YAML"
                )
                return ""
            return value

        out.append(PLACEHOLDER.sub(substitute, line))
    if problems:
        raise RenderError("\n".join(problems))
    return "".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: render.py TEMPLATE.yaml", file=sys.stderr)
        return 2
    path = argv[1]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        sys.stdout.write(render(text, os.environ, source=path))
    except (OSError, RenderError) as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
