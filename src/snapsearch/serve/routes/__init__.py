"""The service's routes, one router per concern: searching, the catalog's products, the page and health."""
