"""roadnet: see the modules in this package."""
