"""The labeler service's routers, one per resource: review pages, label runs, datasets."""
