"""Mount the Factory's IdeOnly routers and its service on an ide/all application.

Imported only inside ``create_app``'s IdeOnly block: a serve replica never loads it.
The application's lifespan starts and stops ``app.state.factory``.
"""

from __future__ import annotations

from fastapi import FastAPI

from quarry.api.ide import files as files_api
from quarry.api.ide import git as git_api
from quarry.api.ide import runs as runs_api
from quarry.api.ide import workspaces as workspaces_api
from quarry.api.services import Services
from quarry.factory.service import Factory


def install(app: FastAPI, svc: Services) -> Factory:
    factory = Factory(svc.settings, svc.engine, svc.store, svc.catalog, svc.queue, holds=svc.holds)
    app.state.factory = factory
    for module in (workspaces_api, files_api, git_api, runs_api):
        app.include_router(module.router)
    return factory
