"""HTTP routes by resource: FleetOk routers in ``api.fleet`` (never import the
Factory), IdeOnly routers in ``api.ide``."""
