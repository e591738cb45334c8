from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from dashboard import views
from tftsite.login import LockoutAuthenticationForm

app_name = "dashboard"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:fleet"), name="home"),
    path("dashboard/", views.fleet, name="fleet"),
    path("dashboard/servers/<str:name>/", views.server, name="server"),
    path("dashboard/alerts/", views.alerts, name="alerts"),
    path("dashboard/windows/", views.windows, name="windows"),
    path("dashboard/alerts/<int:alert_id>/acknowledge", views.alert_ack, name="alert-ack"),
    path("dashboard/poll.json", views.poll, name="poll"),
    path("dashboard/login/", auth_views.LoginView.as_view(template_name="dashboard/login.html",
                                                          authentication_form=LockoutAuthenticationForm,
                                                          redirect_authenticated_user=True), name="login"),
    path("dashboard/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
