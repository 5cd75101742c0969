"""``python -m postwarden_admin_api`` and the ``postwarden-admin`` command (:func:`run`)."""

import sys

from .signals import hold_reload_signals


def run() -> int:
    """Hold the reload signals, then import the rest (most of a start's first second)."""
    hold_reload_signals()
    from .cli import main  # noqa: PLC0415 - after hold_reload_signals, on purpose

    return main()


if __name__ == "__main__":
    sys.exit(run())
