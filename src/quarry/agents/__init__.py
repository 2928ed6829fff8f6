"""Agents: a model answering questions with tools (DESIGN.md §16, docs/agents.md).

Above the runtime: an agent turn uses the run's connections for its SQL tools and
the template engine for its instructions; the runtime learns about ``agent`` tasks
only through the registration hook in :mod:`quarry.agents.tasks`.
"""
