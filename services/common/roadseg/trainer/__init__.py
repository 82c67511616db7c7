"""trainer: see the modules in this package."""
