"""Fixtures of the admin service tests (shared with send_api and webhooks tests)."""

import pytest

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import (  # noqa: F401 - fixtures
    MintKey,
    admin_client,
    admin_key,
    admin_settings,
    fresh_outages,
    make_admin_settings,
    mint_key,
    served_port,
)


@pytest.fixture(scope="module")
def _role_key_cache() -> dict[Role, str]:
    return {}


@pytest.fixture
async def role_keys(mint_key: MintKey,  # noqa: F811 - the imported fixture
                     _role_key_cache: dict[Role, str]) -> dict[Role, str]:
    """One key per role, minted once per test module."""
    for role in Role:
        if role not in _role_key_cache:
            _role_key_cache[role] = await mint_key(role, allowed_senders=["app@example.com"])
    return _role_key_cache
