"""Runnable example apps: FastAPI, Flask and Django, one demo page and the same routes."""
