"""The HTTP layer: routes that translate requests to the service and its errors to HTTP (api/errors.py)."""
