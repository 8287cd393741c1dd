"""The frontend's side: gunicorn's worker processes that speak HTTP and forward requests to model workers."""
