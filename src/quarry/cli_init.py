"""``quarry init [DIR]``: a new workspace of one's own, ready to serve.

Like ``oxy init``, it writes a small working example rather than an empty skeleton:
``config.yml`` with DuckDB over a sample CSV, a semantic view and topic, a procedure
with a formatter report, an app, an agent stub (it needs a model key to answer) and
a ``.gitignore`` for Quarry's local state. The folder becomes a git repository,
since git is where a workspace lives. Existing files are never overwritten: a folder
that already holds a ``config.yml`` is refused, and changes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import typer

from quarry.cli_output import make_console
from quarry.core.errors import ConfigurationError

console = make_console(stderr=True)
out = make_console()

# Package data cannot ship a file named .gitignore reliably (build tools honour it).
_RENAMES = {"gitignore": ".gitignore"}


def _template() -> Traversable:
    return files("quarry.demo") / "init_template"


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for child in sorted(node.iterdir(), key=lambda item: item.name):
        if child.name == "__pycache__":
            continue
        path = f"{prefix}{_RENAMES.get(child.name, child.name)}"
        if child.is_dir():
            found.extend(_walk(child, f"{path}/"))
        else:
            found.append((path, child.read_bytes()))
    return found


def init_workspace(root: Path) -> list[str]:
    """Write the starter workspace into ``root``; the paths written. Refuses (and
    writes nothing) when any of them exists already."""
    content = _walk(_template())
    clashes = [path for path, _ in content if (root / path).exists()]
    if clashes:
        raise ConfigurationError(
            f"{root} already has {', '.join(clashes[:3])}"
            + (f" and {len(clashes) - 3} more" if len(clashes) > 3 else "")
            + "; quarry init never overwrites files (choose an empty or new folder)"
        )
    for path, data in content:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return [path for path, _ in content]


def _git_init(root: Path) -> bool:
    """``git init`` unless the folder is in a repository already (or git is missing)."""
    git = shutil.which("git")
    if git is None:
        return False
    inside = subprocess.run(
        [git, "-C", str(root), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        check=False,
    )
    if inside.returncode == 0:
        return False
    subprocess.run([git, "init", "-q", str(root)], check=True, capture_output=True)
    return True


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    @app.command()
    def init(
        directory: Annotated[
            Path | None,
            typer.Argument(help="Folder for the new workspace (default: the current folder)."),
        ] = None,
    ) -> None:
        """Create a new workspace: sample data, a view and topic, a procedure, an app,
        an agent stub and a .gitignore; make it a git repository."""
        root = (directory or Path.cwd()).resolve()
        try:
            written = init_workspace(root)
        except ConfigurationError as exc:
            raise fail(exc) from exc
        repo = _git_init(root)
        out.print(
            f"created a workspace in {root} ({len(written)} files"
            + (", a new git repository)" if repo else ")"),
            soft_wrap=True,
            highlight=False,
        )
        step = "" if directory is None else f"cd {directory} && "
        out.print("next: serve it and open the printed URL (it recompiles on every save):")
        out.print(f"  {step}quarry serve .", soft_wrap=True, highlight=False)
        out.print(
            "then run the report: "
            "quarry run workflows/sales_report.procedure.yml --var product=Pen",
            soft_wrap=True,
            highlight=False,
        )
