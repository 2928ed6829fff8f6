"""Run ``deploy/entrypoint.sh`` the way the image runs it, without the image: as the
image's non-root uid (``setpriv`` when the tests run as root), with the environment
``deploy/Containerfile`` sets (its ``/var/lib/quarry`` and ``/app`` paths mapped to
folders here), on a read-only copy of the source and the entrypoint, with only the
data folder writable."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.deploy.containerfile import CONTAINERFILE, DATA_VOLUME, REPO, env_of, parse

IMAGE_UID = 10001  # USER in deploy/Containerfile


def _read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        mode = path.stat().st_mode
        path.chmod(
            mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IRGRP | stat.S_IROTH
        )
    root.chmod(0o555)


@dataclass
class ImageRoot:
    """``app`` (read-only: source + entrypoint) and ``data`` (the volume)."""

    root: Path
    app: Path
    data: Path
    env: dict[str, str]

    @property
    def entrypoint(self) -> Path:
        return self.app / "entrypoint.sh"

    def command(self, *args: str) -> list[str]:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"]
        return [*prefix, str(self.entrypoint), *args]

    def data_dir(self, name: str) -> Path:
        """A separate volume per container (as in Kubernetes), owned by the image's uid."""
        path = self.root / "volumes" / name
        path.mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(path, IMAGE_UID, IMAGE_UID)
        path.chmod(0o750)
        return path

    def container_env(self, volume: Path, extra: Mapping[str, str]) -> dict[str, str]:
        """The image's environment with its data volume at ``volume``, plus ``extra``."""
        env = {
            k: v.replace(DATA_VOLUME, str(volume)) if isinstance(v, str) else v
            for k, v in self.env.items()
        }
        return {**env, **extra}

    def start(
        self, volume: Path, log: Path, *args: str, env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                self.command(*args),
                env=self.container_env(volume, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run(
        self, volume: Path, *args: str, env: Mapping[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.container_env(volume, env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _reachable(interpreter: str) -> bool:
    """Can the image's uid run this interpreter (it may live under a private /root)?"""
    # Through a shell, as the entrypoint runs it (setpriv's own exec is not the test).
    command = ["sh", "-c", 'exec "$0" -c "import sys; print(sys.version_info[:2])"', interpreter]
    if os.geteuid() == 0:
        command = [
            "setpriv",
            f"--reuid={IMAGE_UID}",
            f"--regid={IMAGE_UID}",
            "--clear-groups",
            *command,
        ]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == str(sys.version_info[:2])


def _image_venv(app: Path) -> Path:
    """The image's /app/.venv: a virtualenv on an interpreter the image's uid can run,
    whose packages are the checkout's locked dependencies and whose ``quarry`` is the
    read-only copy of the source (the checkout's editable install is not on its path)."""
    candidates = [
        os.path.realpath(sys.executable),
        shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "",
    ]
    base = next((c for c in candidates if c and _reachable(c)), None)
    if base is None:
        pytest.skip(
            f"no Python {sys.version_info[0]}.{sys.version_info[1]} the image's uid can run"
        )
    venv = app / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    dependencies = next(
        p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)
    )
    (site / "image.pth").write_text(f"{app / 'src'}\n{dependencies}\n")
    script = venv / "bin" / "quarry"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nfrom quarry.cli import main\nmain()\n")
    script.chmod(0o755)
    return venv / "bin"


@contextmanager
def image_root() -> Iterator[ImageRoot]:
    # Not under pytest's tmp_path: its parents are private to root and the image's
    # user could not reach the files.
    root = Path(tempfile.mkdtemp(prefix="quarry-image-"))
    root.chmod(0o755)
    try:
        app = root / "app"
        shutil.copytree(REPO / "src", app / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(REPO / "deploy" / "entrypoint.sh", app / "entrypoint.sh")
        venv_bin = _image_venv(app)
        _read_only(app)
        (root / "volumes").mkdir(mode=0o755)
        image_env = env_of(parse(CONTAINERFILE.read_text())[-1])
        env = {
            **{k: v.replace("/app/.venv/bin", str(venv_bin)) for k, v in image_env.items()},
            "LANG": "C.UTF-8",
        }
        yield ImageRoot(root, app, root / "volumes", env)
    finally:
        for path in root.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        root.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
