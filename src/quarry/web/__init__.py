"""HTML pages for people: read from the catalog and store, like every FleetOk route."""
