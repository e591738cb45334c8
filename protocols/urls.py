from django.urls import path, re_path

from protocols import read_api
from protocols.api import OtlpMetricsApi, RemoteWriteApi
from protocols.autoscale import AutoscalePeakApi

_PROM = r"^prometheus/api/v1/"

urlpatterns = [
    re_path(r"^api/v1/write/?$", RemoteWriteApi.as_view(), name="remote-write"),
    re_path(r"^v1/metrics/?$", OtlpMetricsApi.as_view(), name="otlp-metrics"),
    re_path(_PROM + r"query$", read_api.query_view, name="prom-query"),
    re_path(_PROM + r"query_range$", read_api.query_range_view, name="prom-query-range"),
    re_path(_PROM + r"series$", read_api.series_view, name="prom-series"),
    re_path(_PROM + r"labels$", read_api.labels_view, name="prom-labels"),
    re_path(
        _PROM + r"label/(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)/values$", read_api.label_values_view, name="prom-label-values"
    ),
    re_path(_PROM + r"metadata$", read_api.metadata_view, name="prom-metadata"),
    re_path(_PROM + r"status/buildinfo$", read_api.buildinfo_view, name="prom-buildinfo"),
    re_path(_PROM + r"query_exemplars$", read_api.empty_list_view, name="prom-exemplars"),
    path("autoscale/v1/peak", AutoscalePeakApi.as_view(), name="autoscale-peak"),
]
