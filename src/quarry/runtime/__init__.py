"""Connectors, the workflow engine, apps, durable steps, the queue and workers."""
