"""Every page router of the web app that ``quarry.api.app`` registers as one.

The dashboard page (``quarry.web.apps``) and the home page (``quarry.web.index``)
are registered on their own, as before.
"""

from __future__ import annotations

from fastapi import APIRouter

from quarry.web import chat, explore, runs, schedules, signin

router = APIRouter(include_in_schema=False)
router.include_router(signin.router)
router.include_router(runs.router)
router.include_router(schedules.router)
router.include_router(explore.router)
router.include_router(chat.router)
