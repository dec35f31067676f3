"""A Django project for the tests, in-process or under gunicorn (WSGI) and uvicorn (ASGI).

The model name picks the upstream: ``test/<scenario>`` a recording sync fake
from ``upstreams.py``, ``atest/<scenario>`` its async twin, ``demo/*`` the
demo client (instant), ``raise/now`` a client that fails before streaming.
``GET /_tracker`` reports what the upstreams, the client, the callbacks and
``warnings`` saw; ``POST /_reset`` clears it.
"""
