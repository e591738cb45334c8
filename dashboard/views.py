"""Dashboard pages: thin views over dashboard.selectors; the one write goes through forecasting.alerts.services."""

from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard import selectors
from forecasting.alerts.services import alert_acknowledge

logger = logging.getLogger(__name__)


def dashboard_login_required(view):
    """Login is required when DEBUG is off. In local mode (`make run`, DEBUG on) the dashboard is
    open, as the feed API is, so a first look needs no account. Read at request time so a settings
    change (and the tests) take effect without a reload."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.DEBUG and not request.user.is_authenticated:
            if request.path.endswith(".json"):
                return JsonResponse({"error": "login_required"}, status=401)
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _server_prefix() -> str:
    # Links are built by prefix: reversing a URL for each of 200 servers × 5 links costs more than the page.
    return reverse("dashboard:fleet") + "servers/"


def _render(request, template: str, context: dict):
    context["page"] = selectors.page_header()
    context["server_prefix"] = _server_prefix()
    context["ack_prefix"] = reverse("dashboard:alerts")
    return render(request, template, context)


@require_GET
@never_cache
@dashboard_login_required
def fleet(request):
    page = request.GET.get("page", "1")
    query = request.GET.get("q", "")[:64]
    context = selectors.fleet_overview(server_prefix=_server_prefix(), page=int(page) if page.isdigit() else 1,
                                       query=query)
    return _render(request, "dashboard/fleet.html", context)


@require_GET
@never_cache
@dashboard_login_required
def server(request, name: str):
    detail = selectors.server_detail(name=name)
    if detail is None:
        raise Http404(f"no server named {name!r} has sent data")
    detail["timeline"] = selectors.alert_timeline(server_name=name)
    return _render(request, "dashboard/server.html", detail)


@require_GET
@never_cache
@dashboard_login_required
def windows(request):
    return _render(request, "dashboard/windows.html", selectors.windows_board())


@require_GET
@never_cache
@dashboard_login_required
def alerts(request):
    board = selectors.alerts_board(
        state=request.GET.get("state", "active"),
        severity=request.GET.get("severity", ""),
        metric=request.GET.get("metric", ""),
        server=request.GET.get("server", "").strip()[:64],
    )
    board["next"] = request.get_full_path()
    return _render(request, "dashboard/alerts.html", board)


@require_POST
@dashboard_login_required
def alert_ack(request, alert_id: int):
    # Staff only, even in local mode: acknowledging silences an alert for everyone.
    # and the permission to change alerts, as in the admin's acknowledge action.
    if not (request.user.is_authenticated and request.user.is_staff):
        return HttpResponseForbidden("Acknowledging alerts needs a staff account.")
    if not request.user.has_perm("forecasting.change_alert"):
        return HttpResponseForbidden("Acknowledging alerts needs the permission to change alerts.")
    if alert_acknowledge(alert_id=alert_id, user=request.user):
        logger.info("alert acknowledged", extra={"alert_id": alert_id, "user": request.user.get_username()})
        messages.success(request, f"Alert {alert_id} acknowledged.")
    else:
        messages.warning(request, f"Alert {alert_id} was not active (already acknowledged or resolved).")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("dashboard:alerts")
    return redirect(target)


@require_GET
@never_cache
@dashboard_login_required
def poll(request):
    return JsonResponse(selectors.poll_signature())
