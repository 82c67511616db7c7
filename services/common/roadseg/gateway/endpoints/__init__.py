"""The gateway's routers, one per resource: the model, predictions, and the page's htmx fragments."""
