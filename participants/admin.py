"""The site's share of the admin: starting a SuperNode, added to the node sessions' page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from accounts import services as accounts_services
from orchestration import admin_controls, waits
from orchestration.admin import NodeSessionAdmin
from orchestration.models import NodeSession
from participants import services


class SupernodeStartForm(forms.Form):
    partition_id = forms.IntegerField(min_value=0, initial=0)
    num_partitions = forms.IntegerField(min_value=1, initial=1)
    superlink_address = forms.CharField(required=False)
    clientappio_api_address = forms.CharField(
        required=False,
        help_text="host:port of the SuperNode's runtime API, in FEDML_SUPERNODE_PORT_RANGE (empty: the first free port)",
    )
    insecure = forms.BooleanField(required=False, initial=True)
    certificates_path = forms.CharField(required=False)
    extra_args = forms.CharField(required=False)

    def clean_extra_args(self) -> list[str]:
        return admin_controls.split_args(self.cleaned_data["extra_args"])


def start_supernode(data: dict[str, Any]) -> str:
    session = services.supernode_request_start(
        node=accounts_services.participant_node_ensure(),
        superlink_address=data["superlink_address"] or None,
        partition_id=data["partition_id"],
        num_partitions=data["num_partitions"],
        clientappio_api_address=data["clientappio_api_address"] or None,
        insecure=data["insecure"],
        certificates_path=data["certificates_path"] or None,
        extra_args=data["extra_args"],
    )
    session = waits.session_wait_spawned(session_id=session.id)
    return f"SuperNode {session.status} (pid {session.pid})"


class SiteNodeSessionAdmin(NodeSessionAdmin):
    controls = (
        *NodeSessionAdmin.controls,
        ("start-supernode", "Start SuperNode", SupernodeStartForm, start_supernode),
    )


admin.site.unregister(NodeSession)
admin.site.register(NodeSession, SiteNodeSessionAdmin)
