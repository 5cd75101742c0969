"""postwarden_admin_api: the admin service (keys, policies, audit, settings, send, webhooks)."""

from .app import create_app
from .settings import ServiceSettings, load_settings

__all__ = ["ServiceSettings", "create_app", "load_settings"]
