"""The ingest service's API routers, one per resource."""
