"""A Django project serving ``protocol="openai"`` under ``v1/``, CSRF and GZip middleware on."""
