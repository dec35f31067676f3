from __future__ import annotations

import openai_apps
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from indox_integrations.django.urls import patterns


def tracker(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openai_apps.tracker())


@csrf_exempt
def reset(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openai_apps.reset())


urlpatterns = [
    path("v1/", include(patterns())),
    path("_tracker", tracker),
    path("_reset", reset),
]
