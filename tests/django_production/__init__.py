"""A Django project for the production tests: auth, sessions and CSRF on, stream limits.

It mirrors ``production_apps``: ``limited/stream`` (``MAX_STREAMS`` from the
settings), ``perkey/stream``, ``v1/chat/completions`` and ``auth/stream`` (a
logged-in user, :class:`~indox_integrations.django.auth.LoginRequiredMixin`).
``POST /_login {"username"}`` logs a user in (creating it); the database is
the SQLite file ``$INDOX_TEST_DB``, migrated by the tests before the servers start.
"""
