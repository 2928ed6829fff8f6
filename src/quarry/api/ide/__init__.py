"""IdeOnly routers: working copy, git, compile, live runs. Served by ide/all only."""
