"""labeler: see the modules in this package."""
