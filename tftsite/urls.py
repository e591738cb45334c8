from django.contrib import admin
from django.urls import path, re_path

from forecasting.api import AlertsActiveApi, PredictionsCurrentApi, PredictionsServerApi
from ingest.api import FeedDataApi, HealthApi, StatusApi

# The contract's paths have no trailing slash; accept one too, since a POST cannot be redirected.
urlpatterns = [
    re_path(r"^feed/data/?$", FeedDataApi.as_view(), name="feed-data"),
    re_path(r"^status/?$", StatusApi.as_view(), name="status"),
    re_path(r"^health/?$", HealthApi.as_view(), name="health"),
    re_path(r"^predictions/current/?$", PredictionsCurrentApi.as_view(), name="predictions-current"),
    re_path(r"^predictions/(?P<server>[A-Za-z0-9][A-Za-z0-9._:@-]{0,63})/?$", PredictionsServerApi.as_view(),
            name="predictions-server"),
    re_path(r"^alerts/active/?$", AlertsActiveApi.as_view(), name="alerts-active"),
    path("admin/", admin.site.urls),
]
