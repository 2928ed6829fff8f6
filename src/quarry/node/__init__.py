"""The composition root: what a Quarry process opens and runs.

``quarry.node.services`` opens the state database, queue, object store and catalog
and decides the local folders (:mod:`quarry.node.paths`); ``quarry.node.node`` is the
:class:`~quarry.node.node.Node` — the components one process runs and the order they
start and stop in; ``quarry.node.roles`` builds the node for a command (``serve``,
``worker``, ``driver``). It sits below ``quarry.cli`` and ``quarry.api`` and above
everything else. This ``__init__`` imports nothing, so importing a submodule never
loads the Factory (only ``roles`` does, lazily, for a topology that serves IDE routes).
"""
