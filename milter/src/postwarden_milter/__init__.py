"""postwarden_milter: the pymilter process that checks, sanitizes and audits mail.

Run it with ``postwarden-milter`` (or ``python -m postwarden_milter``); the
modules are internal. Only :mod:`postwarden_milter.libmilter` imports pymilter.
Nothing is imported here: the command holds its signals before the imports
(:mod:`.__main__`).
"""

__all__: list[str] = []
