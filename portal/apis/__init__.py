"""The dashboard's data API: `/api/admin/*` (a project's coordinators and staff) and `/api/client/*` (anyone signed in)."""
