from django.contrib import admin
from django.urls import path, re_path

from ingest.api import FeedDataApi, HealthApi, StatusApi

# The contract's paths have no trailing slash; accept one too, since a POST cannot be redirected.
urlpatterns = [
    re_path(r"^feed/data/?$", FeedDataApi.as_view(), name="feed-data"),
    re_path(r"^status/?$", StatusApi.as_view(), name="status"),
    re_path(r"^health/?$", HealthApi.as_view(), name="health"),
    path("admin/", admin.site.urls),
]
