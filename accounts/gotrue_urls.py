"""Embedded Supabase Auth, mounted at /auth/v1/ (see accounts.gotrue): GoTrue's paths, no slash."""

from __future__ import annotations

from django.urls import path

from accounts import gotrue

urlpatterns = [
    path("token", gotrue.token),
    path("user", gotrue.user),
    path("logout", gotrue.logout),
    path("signup", gotrue.signup),
    path("settings", gotrue.auth_settings),
]
