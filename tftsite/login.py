"""Login forms with a lockout (access/lockout.py): after TFT_LOGIN_MAX_FAILURES wrong logins
from one client address within TFT_LOCKOUT_WINDOW_SECONDS, that address gets a clear message instead
of a password check for TFT_LOCKOUT_SECONDS, the right password included (else the lockout would
only slow a guesser down). Used by the admin site and the dashboard's login page."""

import math

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from access.lockout import client_address, failure_record, failures_clear, lockout_wait

SCOPE = "login"


def _locked_out(wait: float) -> ValidationError:
    minutes = max(1, math.ceil(wait / 60))
    return ValidationError(
        "Too many failed logins from your address. Try again in %(minutes)d minutes.",
        code="locked_out",
        params={"minutes": minutes},
    )


class LockoutMixin:
    def clean(self):
        if not settings.TFT_LOGIN_MAX_FAILURES:
            return super().clean()
        idents = [client_address(self.request)]
        wait = lockout_wait(scope=SCOPE, idents=idents)
        if wait:
            raise _locked_out(wait)
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if any(error.code == "invalid_login" for error in exc.error_list):
                wait = failure_record(scope=SCOPE, idents=idents, limit=settings.TFT_LOGIN_MAX_FAILURES)
                if wait:
                    raise _locked_out(wait) from None
            raise
        failures_clear(scope=SCOPE, idents=idents)
        return cleaned


class LockoutAuthenticationForm(LockoutMixin, AuthenticationForm):
    pass


class LockoutAdminAuthenticationForm(LockoutMixin, AdminAuthenticationForm):
    pass
