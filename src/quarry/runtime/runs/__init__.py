"""Runs: creating them (run row + queued task in one transaction), executing them on
a worker with durable step checkpoints, and their artifacts."""
