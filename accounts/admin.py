from __future__ import annotations

from django.contrib import admin

from accounts.models import Membership


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "node", "created_at")
    list_filter = ("role", "project")
    autocomplete_fields = ()
