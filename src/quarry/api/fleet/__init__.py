"""FleetOk routers: database and object store only. Never import quarry.factory."""
