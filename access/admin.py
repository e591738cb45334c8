from django.contrib import admin, messages

from access.models import ApiKey
from access.services import api_key_create, api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Named keys. The key is generated on save and shown once; only its hash is stored."""

    list_display = ("name", "prefix", "can_feed", "can_read", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active", "can_feed", "can_read")
    fields = ("name", "can_feed", "can_read")
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        # Keys are created or revoked, never edited: no change form, and revoking (a change of
        # is_active) needs the change permission like any other edit.
        return obj is None and super().has_change_permission(request)

    def save_model(self, request, obj, form, change):
        key, raw = api_key_create(name=obj.name, can_feed=obj.can_feed, can_read=obj.can_read)
        obj.pk = key.pk
        self.message_user(
            request, f"API key for {key.name}: {raw} — copy it now, it will not be shown again.", messages.WARNING
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        done = sum(api_key_revoke(key_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} keys revoked.")
