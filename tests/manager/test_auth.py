"""Tokens and roles."""

from __future__ import annotations

import pytest

from chokepoint.manager import auth


def test_secrets_are_random_and_only_their_hash_is_compared():
    a, b = auth.new_secret(), auth.new_secret()
    assert a != b and a.startswith("cpm_") and len(a) > 40
    assert auth.token_hash(a) != a and len(auth.token_hash(a)) == 64


def test_scopes():
    op = auth.Principal(1, "op", "operator", deployment_id=7)
    assert op.can_write(7) and not op.can_write(8) and op.can_read(7) and not op.can_read(8)
    with pytest.raises(auth.Forbidden):
        op.require_write(8)
    viewer = auth.Principal(2, "v", "viewer")
    assert viewer.can_read(8) and not viewer.can_write(8)
    node = auth.Principal(3, "n", "node", deployment_id=7)
    assert node.can_act_as_node(7) and not node.can_act_as_node(8) and not node.can_write(7)
    with pytest.raises(ValueError):
        auth.check_role("operator", None)
    with pytest.raises(ValueError):
        auth.check_role("admin", 3)


def test_bearer_header():
    assert auth.bearer("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(auth.AuthError):
            auth.bearer(bad)
