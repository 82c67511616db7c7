"""ingest: see the modules in this package."""
