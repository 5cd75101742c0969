"""`python -m postwarden_milter` and the `postwarden-milter` command (:func:`run`)."""

import sys

from .signals import hold_signals


def run() -> int:
    """Hold our signals, then import the rest: the imports and the settings take most
    of a start's first fraction of a second, where a SIGHUP (a reload asked for right
    after a start) killed the milter. The milter's handlers take them once in place."""
    hold_signals()
    from .cli import main  # noqa: PLC0415 - after hold_signals, on purpose

    return main()


if __name__ == "__main__":
    sys.exit(run())
