"""Schema and migrations on real chDB: from empty and from every earlier version, a newer
database refused, and the dedup properties the exactly-once design rests on."""

from __future__ import annotations

import time

import pytest

from cloud.columns import READINGS_COLUMNS, ipc_stream
from cloud.migrate import SchemaTooNew, apply_tiering, current_version, migrate
from cloud.schema import LATEST_VERSION, MIGRATIONS
from cloud.store import ChdbStore

EXPECTED_TABLES = {
    1: {"readings", "batches", "rollup_1m", "rollup_1h", "rollup_1m_mv", "rollup_1h_mv"},
    2: {"devices"},
    3: {"device_health"},
}


@pytest.fixture
def store(tmp_path):
    s = ChdbStore(tmp_path / "ch")
    yield s
    s.close()


def tables(store) -> set[str]:
    return {r[0] for r in store.query("SHOW TABLES")}


def test_migrate_from_empty_creates_every_table_and_records_each_version(store):
    assert current_version(store) == 0
    assert migrate(store) == LATEST_VERSION
    want = set().union(*EXPECTED_TABLES.values()) | {"readings_1m", "readings_1h"}
    assert want <= tables(store)
    rows = store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    assert migrate(store) == LATEST_VERSION  # a second start changes nothing
    assert store.query("SELECT count() FROM schema_migrations") == [[len(MIGRATIONS)]]


@pytest.mark.parametrize("start", [m.version for m in MIGRATIONS[:-1]])
def test_migrate_from_each_earlier_version_keeps_data(store, start):
    assert migrate(store, target=start) == start
    for v, names in EXPECTED_TABLES.items():
        assert (names <= tables(store)) == (v <= start)
    store.command(
        "INSERT INTO readings (device, metric, ts, value, boot, seq, batch_seq, device_ts, "
        "time_source) VALUES ('d', 'm', now64(6), 1.5, 1, 7, 7, 10, 'device_clock')"
    )
    assert migrate(store) == LATEST_VERSION
    assert set().union(*EXPECTED_TABLES.values()) <= tables(store)
    assert store.query("SELECT device, seq, value FROM readings FINAL") == [["d", 7, 1.5]]
    assert store.query("SELECT count FROM readings_1m") == [[1]]


def test_database_newer_than_code_is_refused_and_left_alone(store):
    migrate(store)
    store.command(
        f"INSERT INTO schema_migrations (version, name) VALUES ({LATEST_VERSION + 1}, 'x')"
    )
    before = sorted(tables(store))
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 1}, newer than this code"):
        migrate(store)
    assert sorted(tables(store)) == before


def _one_row_stream() -> bytes:
    import pyarrow as pa

    return ipc_stream(
        pa.RecordBatch.from_arrays(
            [
                pa.array(["d"]),
                pa.array(["m"]),
                pa.array([int(time.time() * 1e6)], pa.timestamp("us", tz="UTC")),
                pa.array([2.5]),
                pa.array([1], pa.uint32()),
                pa.array([3], pa.uint64()),
                pa.array([3], pa.uint64()),
                pa.array([10], pa.int64()),
                pa.array([1], pa.int8()),
            ],
            names=READINGS_COLUMNS,
        )
    )


def test_plain_mergetree_keeps_no_dedup_window_but_readings_does(store):
    """Why the schema sets non_replicated_deduplication_window and reads use FINAL."""
    migrate(store)
    store.command("CREATE TABLE plain AS readings ENGINE = MergeTree ORDER BY (device, seq)")
    token = {"insert_deduplication_token": "same-fetch"}
    data = _one_row_stream()
    for _ in range(2):
        store.insert_arrow("plain", READINGS_COLUMNS, data, token)
        store.insert_arrow("readings", READINGS_COLUMNS, data, token)
    assert store.query("SELECT count() FROM plain") == [[2]]  # the trap
    assert store.query("SELECT count() FROM readings") == [[1]]  # retried insert dropped
    assert store.query("SELECT count FROM readings_1m") == [[1]]  # and in the views
    # a redelivery arrives with another token: stored twice, shown once
    store.insert_arrow("readings", READINGS_COLUMNS, data, {"insert_deduplication_token": "b"})
    assert store.query("SELECT count() FROM readings FINAL") == [[1]]
    assert store.query("SELECT count, sum FROM readings_1m") == [[1, 2.5]]
    assert store.query("SELECT sum(n) FROM rollup_1m") == [[2]]  # the partials were doubled


def test_tiering_stays_off_without_a_cold_volume(store):
    """chDB has one disk: no TTL move is added (the ALTER would fail without the volume)."""
    migrate(store)
    before = store.query("SELECT create_table_query FROM system.tables WHERE name = 'readings'")
    assert apply_tiering(store) is False
    after = store.query("SELECT create_table_query FROM system.tables WHERE name = 'readings'")
    assert after == before
    assert "TO VOLUME" not in after[0][0]


def test_a_retry_heals_a_view_that_missed_the_first_insert(store):
    """A server-side insert can stop between the readings part and a view's part. The
    writer retries the same rows (without insert deduplication, cloud/writer.py says why):
    readings gets a second copy that FINAL hides, the view that missed its part gets it,
    and the one that had it gets a second partial under the same key, which collapses."""
    migrate(store)
    data = _one_row_stream()
    settings = {"insert_deduplicate": 0}
    store.insert_arrow("readings", READINGS_COLUMNS, data, settings)
    store.command("TRUNCATE TABLE rollup_1m")  # the part the cut lost
    store.insert_arrow("readings", READINGS_COLUMNS, data, settings)
    assert store.query("SELECT count() FROM readings FINAL") == [[1]]
    assert store.query("SELECT count, sum FROM readings_1m") == [[1, 2.5]]
    assert store.query("SELECT count, sum FROM readings_1h") == [[1, 2.5]]
