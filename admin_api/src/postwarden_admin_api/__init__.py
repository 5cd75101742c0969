"""postwarden_admin_api: the admin service (keys, policies, audit, settings, send, webhooks).

Nothing is imported here: the command holds its reload signals before the imports
(:mod:`.__main__`).
"""

__all__: list[str] = []
