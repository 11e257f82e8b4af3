"""One module per page: layout() and register(app)."""
