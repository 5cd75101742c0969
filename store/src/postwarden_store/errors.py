"""Exceptions of postwarden_store.

    StoreError
    ├── MigrationError      a migration failed or an applied one was edited
    ├── SchemaTooOld        the database lacks migrations this code needs
    ├── DatabaseUnreachable a command's connection failed (refused, no answer)
    ├── DatabaseSilent      the server stopped answering a command once connected
    ├── DatabaseUrlRefused  database_url's own options refused: invalid settings
    └── DatabaseReadOnly    the database refuses writes (a standby)
"""


class StoreError(Exception):
    """Base of every error raised by postwarden_store."""


class MigrationError(StoreError):
    pass


class DatabaseUnreachable(StoreError):
    pass


class DatabaseSilent(StoreError):
    pass


class SchemaTooOld(StoreError):
    def __init__(self, pending: list[str], never_migrated: bool = False) -> None:
        self.pending = pending
        # Never migrated: the name of every migration (fifty and more) told nothing more,
        # in a line that a unit restarting the milter every 2 s repeated.
        missing = ("the database has no postwarden schema (never migrated)" if never_migrated
                   else f"database schema is missing {len(pending)} migration(s) "
                        f"({', '.join(pending)})")
        super().__init__(
            f"{missing}; run `postwarden-store migrate` (or `postwarden-milter migrate`)")


class DatabaseUrlRefused(StoreError):
    """What database_url asks that the client or the server refuses (see
    pool.url_refusal): invalid settings, not an outage; only a fixed URL mends it."""


class DatabaseReadOnly(StoreError):
    """The server takes connections and reads, but no writes: a standby (pointed at
    after a failover), or default_transaction_read_only set for the database or role."""

    def __init__(self) -> None:
        super().__init__("the database refuses writes (a standby, or "
                         "default_transaction_read_only on): point database_url at the primary")
