"""The HTTP client: the manager's messages kept, an absent manager said plainly."""

from __future__ import annotations

import pytest

from chokepoint.manager.client import ManagerClient, ManagerError, Unreachable
from tests.manager.conftest import free_port


def test_errors_keep_the_status_and_the_managers_message(manager_process):
    client = ManagerClient(manager_process.url, manager_process.admin)
    with pytest.raises(ManagerError) as err:
        client.status("nope")
    assert err.value.status == 404 and "no deployment 'nope'" in err.value.detail
    with pytest.raises(ManagerError) as err:
        ManagerClient(manager_process.url, "cpm_wrong").deployments()
    assert err.value.status == 401
    with pytest.raises(Unreachable, match="cannot reach the manager"):
        ManagerClient(f"http://127.0.0.1:{free_port()}", "x").deployments()
