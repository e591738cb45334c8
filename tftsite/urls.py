from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from forecasting.api import (
    AlertsActiveApi,
    MaintenanceWindowCreateApi,
    MaintenanceWindowEndApi,
    MaintenanceWindowsListApi,
    PredictionsCurrentApi,
    PredictionsServerApi,
    ProbabilitiesReliabilityApi,
)
from forecasting.prometheus import metrics_view
from ingest.api import FeedDataApi, HealthApi
from tftsite.login import LockoutAdminAuthenticationForm
from tftsite.views import StatusApi, favicon_view

admin.site.login_form = LockoutAdminAuthenticationForm  # wrong passwords lock the address out a while

# The contract's paths have no trailing slash; accept one too, since a POST cannot be redirected.
urlpatterns = [
    re_path(r"^feed/data/?$", FeedDataApi.as_view(), name="feed-data"),
    re_path(r"^status/?$", StatusApi.as_view(), name="status"),
    re_path(r"^health/?$", HealthApi.as_view(), name="health"),
    re_path(r"^predictions/current/?$", PredictionsCurrentApi.as_view(), name="predictions-current"),
    # Any name reaches the view, which answers a bad one with a JSON 400 (not Django's HTML 404).
    re_path(r"^predictions/(?P<server>[\s\S]+?)/?\Z", PredictionsServerApi.as_view(), name="predictions-server"),
    re_path(r"^alerts/active/?$", AlertsActiveApi.as_view(), name="alerts-active"),
    re_path(r"^alerts/windows/?$", MaintenanceWindowsListApi.as_view(), name="maintenance-windows"),
    re_path(r"^alerts/windows/create/?$", MaintenanceWindowCreateApi.as_view(), name="maintenance-window-create"),
    re_path(r"^alerts/windows/(?P<window_id>[^/]+)/end/?$", MaintenanceWindowEndApi.as_view(),
            name="maintenance-window-end"),
    re_path(r"^probabilities/reliability/?$", ProbabilitiesReliabilityApi.as_view(), name="probabilities-reliability"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    path("favicon.ico", favicon_view, name="favicon"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
    path("", include("protocols.urls")),  # remote_write, OTLP, the Prometheus read API, the autoscaler hook
    path("", include("dashboard.urls")),  # operator pages under /dashboard/, "/" redirects there
]
