"""postwarden_milter: the pymilter process that checks, sanitizes and audits mail.

Run it with ``postwarden-milter`` (or ``python -m postwarden_milter``); the
modules are internal. Only :mod:`postwarden_milter.libmilter` imports pymilter.
"""

from .settings import MilterSettings, load_settings

__all__ = ["MilterSettings", "load_settings"]
