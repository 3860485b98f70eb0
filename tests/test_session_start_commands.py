"""`superlink_start` and `supernode_start` take a restart policy; a wrong one is a CommandError
naming the field, and nothing is written."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import NodeSession

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("command", ["superlink_start", "supernode_start"])
def test_an_unknown_restart_policy_is_refused_naming_the_field_and_writes_nothing(command):
    with pytest.raises(CommandError, match=r"^restart_policy must be one of never, on-failure, always$"):
        call_command(command, "--restart-policy", "sometimes")

    assert NodeSession.objects.count() == 0
