"""A minimal Django project serving the demo page and the kit's streaming views."""
