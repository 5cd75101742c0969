"""postwarden_store: PostgreSQL schema, migrations, pool and shared queries."""

from .audit import write_audit_batch
from .dsn import dsn_problem
from .errors import DatabaseUnreachable, MigrationError, SchemaTooOld, StoreError
from .migrations import (
    apply_migrations,
    check_schema_current,
    migrate_database,
    pending_migrations,
)
from .pool import connect, create_pool, database_detail, database_problem, unreachable

__all__ = [
    "DatabaseUnreachable",
    "MigrationError",
    "SchemaTooOld",
    "StoreError",
    "apply_migrations",
    "check_schema_current",
    "connect",
    "create_pool",
    "database_detail",
    "database_problem",
    "dsn_problem",
    "migrate_database",
    "pending_migrations",
    "unreachable",
    "write_audit_batch",
]
