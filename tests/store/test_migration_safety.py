"""Migrations that cannot hurt an upgrade: a released one is never edited, and one that
needs a lock another transaction holds neither stalls the tables it waits for nor waits
for good."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from postwarden_store import MigrationError, apply_migrations, connect, migrations
from postwarden_store.migrations import Migration, applied_migrations, available_migrations
from tests.webhooks.receiver import wait_for_async

# Each migration as released. A database migrated by one build must migrate on with
# the next: an edited migration refuses it (checksum mismatch), so a change to the
# schema is a new migration, and a new migration is added here as it is released.
RELEASED = {
    "0001_audit":
        "dfdfb4edb5d51f94a8aa026fbb55114606204c58116703bd28855e35224011cf",
    "0002_policies":
        "3b8c358753fa3334d701dd27add35d15c7528ff94a10a99019389f7dd0faa974",
    "0003_admin":
        "e21aa55c35bc3792b044dae1c06debbd7b650652a5cab82218f7465fe90b81be",
    "0004_outbox":
        "7bbda5e010915ea6af62be90f7675398b77387731d3cfba7b04e36e722641b61",
    "0005_webhooks":
        "268403e2558385485e912c150696ce840103ca7de255502a491432f43a1520c6",
    "0006_webhook_url_secret":
        "ed2f82adb950f2126a58b71265befa3444b0d8d957c7a020d256eb6e36dc1205",
    "0007_send_enqueue":
        "82829bc72e21699e5610deb31cd4d8bc15dfaabb68f72b1bc8ec8d7379a86dce",
    "0008_webhook_wanted":
        "fbcd82aafae6caca6ed2bb5562b2cdf8b451b3d6774cdc2e47524b44aa1a78e5",
    "0009_maillog_apply":
        "c7d95d49d2624973a90834353c163482bb1dfa343ccd3b2a686b4b88a0f54931",
    "0010_idempotency_fence":
        "b6629f621530b7539d12ab11726e2000185e2818764f83f663face8a17ea9618",
    "0011_relay_receipts":
        "43c3a04cde731097a8f8eacb91d6e94f50bd74f55128af2156a4c70152a3a332",
    "0012_maillog_leader":
        "00017f21d54e42699e6551f756eec4a5348b005fb2085c05e0ff284ddc6ebeef",
    "0013_maillog_alias_members":
        "e042e469d78c94bc593632231afc4c43b62f5a13cd7728e4453d8aaba7998060",
    "0014_maillog_pending":
        "b8c6ecd928bd43f4f928a58c1a0095c6f4f8a22bb3e59ad3a7dea010023fc0b4",
    "0015_maillog_message_lines":
        "77e6ca9c0029603f711d9c51aa783e492232299cf9fcd6aa97a9fb9ce3b9a43a",
    "0016_audit_utc_months_and_recipient_case":
        "584ad5fec8c1ee33febaab0bce938d4ee86cc924555d02bc5f94e942289a932f",
    "0017_send_cpu":
        "9e8964bf4ce65c65e5f78c8820c473bdd06f63861a08809b449d3c54716feb99",
    "0018_maillog_one_message_per_queue_id":
        "cce4bf8def632bc655bfa0176d5c2e2d56896724edb3eec2ca1e7811a478b8a8",
    "0019_webhook_raise_locks_endpoints":
        "3e677d76130f2af421126af2a4eab31b29da6c12ef37b30250ba6e3fd7fb9944",
    "0020_webhook_url_set_at":
        "76be5d6ad17244d8b22947e8adb646066bab4ea6909ea1006292c4ce81a6f639",
    "0021_audit_event_id_index":
        "049511846a906b240470d29ffbc108ccf5ec822a5da532751e3226e262c7899a",
    "0022_webhook_policy_deactivated":
        "85646c1a76b2e0ec8569c711883935dd6745bb375fa1bfbf5243bc9de3536920",
    "0023_audit_retention_horizon":
        "c324eef2bf48b231d8780fc07e3352cc3f573856de52de394adc2b8cf86a7a6c",
    "0024_maillog_position_fingerprint":
        "2319552fcc840d939ac24e651bcc25a5f4b51ec9a86a27721dced20b30bc6b04",
    "0025_relay_attempt_log":
        "d5dff7af54b20c92e586a9a676ac2888e1b753beeb33224fea33ece34d91d731",
    "0026_audit_message_uid_index":
        "d1e7dcff682c2dda0e2c7bbb0ff6e4e0c4ca498de88147bc8567b0adfcb00844",
    "0027_webhook_endpoint_due_index":
        "8baf14b0b36d51aa562e299d4cc6d687ae104f51f11e147f38bdaf33ac68d888",
    "0028_send_enqueue_names_full_recipients":
        "696a6e4255f13ddcbbb459ca897a357a4b4ed053b5b6d8194a640a80f026c1d7",
    "0029_maillog_settle_last_error":
        "1bd61c6cfa58bf640e80dc7bc43b31a301d403946f6c222d3d101e92b9de7015",
    "0030_api_key_owner":
        "368e94a1c82b7791586e63d9970c233d49dcf9c48cb581ad3b740d50733f3e76",
    "0031_webhook_send_order":
        "50e9c765508498113fe5ce818a72100eb4fc20fbb85e8d1fc2e7157d49f32f7b",
    "0032_webhook_send_held":
        "bf7f747258cfba363792f5d5f035d4a8848513e7f3b320c31ea5cc7ed0623dc6",
    "0033_maillog_hold_moves_and_logged_at":
        "bc3b5583c5dfb041956e1991da164ed8e35028c8de75158f49b683bf031fbb17",
    "0034_audit_refused_recipients":
        "ec53d87cabef65766cdc1789dc92444a89fc7708b9c45fc4f9cd82a5aaff3db0",
    "0035_audit_login_from_flag_filters":
        "391a027920bf5f161a04534d8ee134eb77672d5e091b8e03d1eb995ecec9f571",
    "0036_send_enqueue_live_key":
        "9f377b6dfd0c224893bd161450f6aaaba0d57dd416a6c2bf0deaa1265c9c3a2d",
    "0037_send_search_indexes":
        "d11bb83965e97836c65b047c2e41b0f86eec30cdde695e8825328f20399e3081",
    "0038_send_outbox_due_by_database_clock":
        "4d521a2aae7d5bcf79abec8da5b1ebf0efe42dd67b206aca8eeab69f0edf6904",
    "0039_webhook_send_alias_members":
        "3d23ba9090aa338de6572e065109b4de5a097aa10b57babe1a08fe6667db7ebb",
    "0040_webhook_deliveries_replay_of_index":
        "8cc07dbfa46f0f5a0fe99127799e569c307561d20137b23412a33fbf926cf225",
    "0041_webhook_send_delivered_once":
        "d524786789370ee4128acb1ae46c375fe44c70bd901f570130b4fb35d1da79bf",
    "0042_send_untracked":
        "f5c0aff5ade7fb97da33a5c8b63ca4b0334431ee0c561b1ad0dad1a87cc2fa98",
    "0043_webhook_endpoint_held_until":
        "7d4a2844039c1042321fcd688d8f40065c1239cdd83f632199dbe1589cd0f8af",
    "0044_send_enqueue_key_share_lock":
        "5a995d3b261df913ccfb19c7999078e80792d71e83ce05803102afbeed0e89d3",
    "0045_webhook_endpoint_disabled_reason":
        "0689f7ac09c423437925b4555a3533203f18b2f811194541824e51e284d81e6b",
    "0046_webhook_body_template_secret":
        "e3c38ff1d9b4638222dfe0d22c52275f5962524da5fa6ee6cb11e5d8941455f9",
    "0047_send_search_tag_index":
        "7ea12509296d64e2927d9140bf1d1bf85c50e674c3d5dc1b8515e8b6d7b6bcf3",
    "0048_send_limits_by_database_clock":
        "6cb92c187be2fa974520fcfc9ea0e927f0448576adce4aa069b68e8cd3e9de86",
    "0049_audit_header_from_dotted_i":
        "e3d586737d48b3bfef5be0753cc9237022cec2a00bcf0c97af29b058e6575c25",
    "0050_maillog_queue_id_ends_at_removal":
        "320581bf66463230c3df32664d1dc1d98e84b215e6136d8c762a68fc2bdd26f4",
    "0051_webhook_delivery_sending":
        "ab5c36f5afdd655fa7050ea71a91a2aebffe6a2528a170cafe4380e30637ce6e",
    "0052_outbox_claimed_by":
        "89ec62bf6a79acec0a5672284d84bb2499408b108220b169763ea66678cd4d02",
    "0053_maillog_short_queue_id_window":
        "ad3b2f7d2818451d23674a8f4e562dcb548ba0265cea61f9a152d8cd4cf0d5d8",
    "0054_outbox_sending_until":
        "2db8fa15d224491c44f451996d47f3c820b872d67a22628cde6ae29fb4eb0b1e",
    "0055_maillog_queue_id_arrival":
        "3102dfd95df508bc3a0bc4dea636bb728d16b6d6e02b5acce53fb6e6b6fe48e0",
    "0056_maillog_lines_before_an_arrival":
        "13530851c5104bab8c2ad545c2ddc8ced98314167b4b5e8249ee660ace243772",
    "0057_maillog_held_requeues":
        "e4c023a0f58cd9ad1da7e059395bbd91e4406b5e3857ddd2e1590ef1214d8a3b",
    "0058_maillog_lines_between_arrivals":
        "f88a8742113a5d27870543c3fb698b0ab50f6c197d2749a621952ac32193ad17",
    "0059_maillog_noqueue_stops":
        "b10accc8c2ba2e29240bb1caade938a4167a5c6abebc997cefe13fed08988c6c",
}


def test_released_migrations_are_never_edited() -> None:
    shipped = {m.version: m.checksum for m in available_migrations()}
    edited = sorted(v for v, checksum in RELEASED.items() if shipped.get(v) != checksum)
    assert edited == [], "a released migration changed: write a new one instead"
    assert sorted(shipped.keys() - RELEASED.keys()) == [], "pin the new migration here"


LOCKING = Migration("9999_lock_test", "ALTER TABLE api_keys ADD COLUMN lock_test integer")


async def test_a_migration_that_waits_for_a_lock_lets_traffic_through_then_names_the_holder(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "available_migrations",
                        lambda: [*available_migrations(), LOCKING])
    monkeypatch.setattr(migrations, "LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(migrations, "LOCK_PAUSE_SECONDS", 0.5)
    holder, migrator, client = [await connect(fresh_database_url) for _ in range(3)]
    try:
        # A reader left open (a psql session in a transaction, a pg_dump).
        reading = holder.transaction()
        await reading.start()
        await holder.fetchval("SELECT count(*) FROM api_keys")
        migrating = asyncio.create_task(apply_migrations(migrator))
        await asyncio.sleep(0.5)  # the ALTER waits in the lock queue now
        started = time.monotonic()
        # Queued behind the waiting ALTER, the send API's key lookup gets through once the
        # migration gives way, not when the reader ends.
        await asyncio.wait_for(client.fetchval("SELECT count(*) FROM api_keys"), 10)
        assert time.monotonic() - started < migrations.LOCK_TIMEOUT_SECONDS + 1
        with pytest.raises(MigrationError, match=f"pid {holder.get_server_pid()} "):
            await migrating
        await reading.rollback()
        assert await apply_migrations(migrator) == [LOCKING.version]
    finally:
        for conn in (holder, migrator, client):
            await conn.close()


@pytest.mark.parametrize("migrate", [apply_migrations, migrations.migrate_pending],
                         ids=["migrate", "dry-run"])
async def test_a_lock_on_schema_migrations_is_waited_for_as_a_migration_s_and_said(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    migrate: Callable[[asyncpg.Connection], Awaitable[list[str]]],
) -> None:
    """A lock held on schema_migrations (a DDL on it, VACUUM FULL) held migrate's read
    of it, saying nothing, for as long."""
    monkeypatch.setattr(migrations, "LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(migrations, "LOCK_PAUSE_SECONDS", 0.5)
    holder, migrator = await connect(fresh_database_url), await connect(fresh_database_url)
    try:
        locking = holder.transaction()
        await locking.start()
        await holder.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(MigrationError, match=f"^the read of schema_migrations could not "
                           f"take its locks .* pid {holder.get_server_pid()} "):
            await asyncio.wait_for(migrate(migrator), 30)
        assert ("the read of schema_migrations waits for a lock another transaction holds "
                "(try 1 of 2)") in caplog.text
        await locking.rollback()
        assert await asyncio.wait_for(migrate(migrator), 30) == []
    finally:
        await holder.close()
        await migrator.close()


async def test_a_second_migrate_says_it_waits_for_the_first(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = await connect(fresh_database_url), await connect(fresh_database_url)
    try:
        await first.execute("SELECT pg_advisory_lock($1)", migrations.ADVISORY_LOCK_KEY)
        waiting = asyncio.create_task(apply_migrations(second))
        await asyncio.sleep(0.5)
        assert "another migrate is running" in caplog.text
        assert not waiting.done()
        await first.execute("SELECT pg_advisory_unlock($1)", migrations.ADVISORY_LOCK_KEY)
        assert await asyncio.wait_for(waiting, 10) == []
    finally:
        await first.close()
        await second.close()


# A migrate run whose last migration is long: its backend runs it while the client lives.
SLOW_MIGRATE = """
import asyncio, sys
from postwarden_store import migrations
from postwarden_store.migrations import Migration, available_migrations
migrations.available_migrations = lambda: [
    *available_migrations(), Migration("9999_slow_test", "SELECT pg_sleep(120)")]
asyncio.run(migrations.migrate_database(sys.argv[1]))
"""
RUNNING_SLOW = ("SELECT pid FROM pg_stat_activity "
                "WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'")


async def test_a_migrate_killed_mid_migration_leaves_no_backend_running_it(
    fresh_database_url: str
) -> None:
    # Killed (by an admin who saw audit writes stall behind an index build, say), its
    # backend ran the migration to its end, holding its locks, then rolled it back.
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SLOW_MIGRATE,
                                                fresh_database_url)
    observer = await connect(fresh_database_url)

    async def running() -> bool:
        return await observer.fetchval(RUNNING_SLOW) is not None

    async def stopped() -> bool:
        return not await running()

    try:
        assert await wait_for_async(running, 30)
        proc.kill()
        await proc.wait()
        assert await wait_for_async(stopped, 10)
        assert "9999_slow_test" not in await applied_migrations(observer)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await observer.close()
