"""Settings, roles and topology, ids, errors: the things every other package may import."""
