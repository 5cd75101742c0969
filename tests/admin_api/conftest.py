"""Fixtures of the admin service tests (shared with send_api and webhooks tests)."""

import pytest

from postwarden_admin_api.context import Role
from postwarden_admin_api.keys import check_role_senders
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


SENDERS = ("app@example.com",)


def _senders_for(role: Role) -> tuple[str, ...]:
    """The allowed senders a key of ``role`` is made with: SENDERS where the API takes
    them (a sender's, an admin's), none elsewhere. mint_key stores what it is given,
    and an operator or auditor key with senders is one the API lists with a problem."""
    try:
        check_role_senders(role, SENDERS)
    except ValueError:
        return ()
    return SENDERS


@pytest.fixture
async def role_keys(mint_key: MintKey,  # noqa: F811 - the imported fixture
                     _role_key_cache: dict[Role, str]) -> dict[Role, str]:
    """One key per role, made as the API would make it, minted once per test module."""
    for role in Role:
        if role not in _role_key_cache:
            _role_key_cache[role] = await mint_key(role, allowed_senders=_senders_for(role))
    return _role_key_cache
