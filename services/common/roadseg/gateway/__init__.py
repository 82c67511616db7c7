"""gateway: see the modules in this package."""
