"""Apply the schema's migrations at start; refuse a database newer than this code."""

from __future__ import annotations

import logging

from cloud.schema import (
    BOOTSTRAP,
    COLD_AFTER_DAYS,
    COLD_VOLUME,
    LATEST_VERSION,
    MIGRATIONS,
    READINGS_TTL_DAYS,
    Migration,
)
from cloud.store import Store

log = logging.getLogger("ringtail.cloud.migrate")


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Ringtail; this code must not write to it."""


def current_version(store: Store) -> int:
    store.command(BOOTSTRAP)
    rows = store.query("SELECT max(version) FROM schema_migrations")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def migrate(
    store: Store, target: int = LATEST_VERSION, migrations: tuple[Migration, ...] = MIGRATIONS
) -> int:
    """Bring the database to `target` (default: the latest) and return its version.

    Each migration's statements are idempotent and its version is recorded only after they
    all ran, so a migration interrupted by a crash runs again in full on the next start.
    Two writers migrating at once run the same idempotent statements; the version row may be
    written twice, which `max(version)` ignores.
    """
    have = current_version(store)
    known = max((m.version for m in migrations), default=0)
    if have > known:
        raise SchemaTooNew(
            f"the database is at schema version {have}, newer than this code knows "
            f"(up to {known}); upgrade Ringtail before running the writer against it"
        )
    for m in migrations:
        if have < m.version <= target:
            log.info("applying schema migration %d: %s", m.version, m.name)
            for statement in m.statements:
                store.command(statement)
            store.command(
                "INSERT INTO schema_migrations (version, name) VALUES "
                f"({m.version}, '{m.name.replace(chr(39), ' ')}')"
            )
            have = m.version
    return have


def apply_tiering(store: Store) -> bool:
    """Move `readings` parts older than COLD_AFTER_DAYS to the volume named COLD_VOLUME when
    the table's storage policy has one (a server configured for tiering); True if tiering is
    on. Not a migration: it depends on the server's disks, not on the schema version. Run at
    every start; the ALTER is issued only when the table's TTL lacks the move, since it
    rewrites the TTL information of every part."""
    rows = store.query(
        "SELECT storage_policy, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'readings'"
    )
    if not rows:
        return False
    policy, ddl = rows[0]
    quoted = str(policy).replace("\\", "\\\\").replace("'", "\\'")
    volumes = store.query(
        f"SELECT volume_name FROM system.storage_policies WHERE policy_name = '{quoted}'"
    )
    if COLD_VOLUME not in {v[0] for v in volumes}:
        return False
    if f"TO VOLUME '{COLD_VOLUME}'" not in ddl:
        log.info(
            "readings: parts older than %d days move to volume %r", COLD_AFTER_DAYS, COLD_VOLUME
        )
        store.command(
            f"ALTER TABLE readings MODIFY TTL toDateTime(ts) + INTERVAL {COLD_AFTER_DAYS} DAY "
            f"TO VOLUME '{COLD_VOLUME}', toDateTime(ts) + INTERVAL {READINGS_TTL_DAYS} DAY DELETE"
        )
    return True
