"""Mount the Factory's IdeOnly routers on an ide/all application.

Imported only inside ``create_app``'s IdeOnly block: a serve replica never loads it.
The node built the Factory (``quarry.node.roles``) and starts and stops it; the
routes find it as ``app.state.factory``.
"""

from __future__ import annotations

from fastapi import FastAPI

from quarry.api.ide import files as files_api
from quarry.api.ide import git as git_api
from quarry.api.ide import runs as runs_api
from quarry.api.ide import workspaces as workspaces_api
from quarry.factory.service import Factory


def install(app: FastAPI, factory: Factory) -> Factory:
    app.state.factory = factory
    for module in (workspaces_api, files_api, git_api, runs_api):
        app.include_router(module.router)
    return factory
