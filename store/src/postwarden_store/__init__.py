"""postwarden_store: PostgreSQL schema, migrations, pool and shared queries."""

from .audit import write_audit_batch
from .dsn import dsn_problem
from .errors import (
    DatabaseReadOnly,
    DatabaseUnreachable,
    DatabaseUrlRefused,
    MigrationError,
    SchemaTooOld,
    StoreError,
)
from .migrations import (
    apply_migrations,
    check_schema_current,
    migrate_database,
    pending_migrations,
)
from .pool import (
    connect,
    connecting,
    create_pool,
    database_detail,
    database_problem,
    detached,
    ending_unanswered,
    read_only,
    refusing_bad_url,
    unreachable,
    url_refusal,
)

__all__ = [
    "DatabaseReadOnly",
    "DatabaseUnreachable",
    "DatabaseUrlRefused",
    "MigrationError",
    "SchemaTooOld",
    "StoreError",
    "apply_migrations",
    "check_schema_current",
    "connect",
    "connecting",
    "create_pool",
    "database_detail",
    "database_problem",
    "detached",
    "dsn_problem",
    "ending_unanswered",
    "migrate_database",
    "pending_migrations",
    "read_only",
    "refusing_bad_url",
    "unreachable",
    "url_refusal",
    "write_audit_batch",
]
