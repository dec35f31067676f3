"""The ``indox_integrations.django`` app: views, URLs and the browser helper's static files."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed

from .. import shutdown
from . import conf


class IndoxIntegrationsConfig(AppConfig):
    name = "indox_integrations.django"
    label = "indox_integrations"
    verbose_name = "indox integrations"

    def ready(self) -> None:
        setting_changed.connect(conf.reload, dispatch_uid="indox_integrations.conf.reload")
        # django.setup() runs in the server's main thread, once its handlers are in place.
        shutdown.install()
