"""The service: the Cascade behind FastAPI (search, live catalog, the page at /)."""
