"""ledger.py on SQLite (the plain sqlite3 path and SQLAlchemy's) and on a real PostgreSQL (pgserver)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from capi_pipeline.errors import ConfigurationError
from capi_pipeline import ledger as ledger_module
from capi_pipeline.ledger import WRITER_CACHE_KIB, Ledger


def keys(n: int, prefix: str = "e", name: str = "Purchase") -> list[tuple[str, str]]:
    return [(name, f"{prefix}{i}") for i in range(n)]


@pytest.fixture(params=["deferred", "indexed_at_once", "sqlalchemy", "sqlalchemy_indexed_at_once", "postgresql",
                        "postgresql_indexed_at_once"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """Every state-machine test six times: keys read from the unindexed batches or flushed after every batch, on a
    file path, a `sqlite:///` URL (opened by SQLAlchemy, then the same plain-sqlite3 calls) and a real PostgreSQL
    (SQLAlchemy throughout: the only backend that runs `_flush_sa` and `_keys_rows_sa`)."""
    if request.param.endswith("indexed_at_once"):
        monkeypatch.setattr(ledger_module, "INDEX_EVERY_KEYS", 1)
    path = tmp_path / "state" / "deep" / "ledger.sqlite"
    if request.param.startswith("postgresql"):
        location = request.getfixturevalue("postgres_url")
    elif request.param.startswith("sqlalchemy"):
        path.parent.mkdir(parents=True)
        location = f"sqlite:///{path}"
    else:
        location = str(path)
    with Ledger.open(location) as opened:
        yield opened  # type: ignore[misc]


def indexed_keys(path: Path) -> int:
    return sqlite3.connect(path).execute("SELECT count(*) FROM capi_ledger_events").fetchone()[0]


def test_open_path_creates_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    Ledger.open(str(path)).close()
    assert path.exists()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_batch_writer_has_a_large_page_cache(tmp_path: Path) -> None:
    # the writer's cache is what keeps mark_sending from re-reading the B-tree's leaves (speed: bench/README.md)
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"))
    assert ledger._fast is not None
    assert ledger._fast._writer.execute("PRAGMA cache_size").fetchone()[0] == -WRITER_CACHE_KIB
    assert WRITER_CACHE_KIB >= 32 * 1024


def test_open_sqlalchemy_url(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'url.sqlite'}") as ledger:
        ledger.mark_sending("b1", "ds", keys(2))
        ledger.mark_sent("b1", "trace")
        assert ledger.filter_unsent("ds", keys(3)) == set(keys(2))


def test_bad_url_names_no_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        Ledger.open("postgresql+nosuchdriver://user:hunter2@db.example/ledger")
    assert "hunter2" not in str(info.value) and "postgresql" in str(info.value)


def test_state_machine(ledger: Ledger) -> None:
    ks = keys(4)
    assert ledger.states("ds", ks) == {} and ledger.batch_state("b1") is None
    ledger.mark_sending("b1", "ds", ks[:2])
    ledger.mark_sending("b2", "ds", ks[2:])
    assert ledger.batch_state("b1") == "sending"
    assert ledger.in_flight("ds") == set(ks)
    assert ledger.filter_unsent("ds", ks) == set()
    ledger.mark_sent("b1", "T1")
    ledger.mark_failed("b2", "gave up: HTTP 500")
    assert ledger.states("ds", ks) == {ks[0]: "sent", ks[1]: "sent", ks[2]: "failed", ks[3]: "failed"}
    assert ledger.filter_unsent("ds", ks) == set(ks[:2])
    assert ledger.in_flight("ds") == set()
    assert ledger.counts("ds") == {"sent": 2, "failed": 2}


def test_resending_moves_events_to_the_new_batch(ledger: Ledger) -> None:
    ks = keys(4)
    ledger.mark_sending("parent", "ds", ks)
    ledger.mark_failed("parent", "split")
    ledger.mark_sending("parent.0", "ds", ks[:2])
    ledger.mark_sent("parent.0", None)
    ledger.mark_sending("parent.1", "ds", ks[2:])
    assert ledger.states("ds", ks) == {ks[0]: "sent", ks[1]: "sent", ks[2]: "sending", ks[3]: "sending"}
    # a forced resend of sent events puts them back in flight until answered
    ledger.mark_sending("again", "ds", ks[:1])
    assert ledger.in_flight("ds") == {ks[0], ks[2], ks[3]}


def test_in_flight_keeps_only_the_keys_still_carried_by_a_sending_batch(ledger: Ledger) -> None:
    # a run killed mid-bisection: the parent is still `sending`, one half was answered
    ks = keys(4)
    ledger.mark_sending("parent", "ds", ks)
    ledger.mark_sending("parent.0", "ds", ks[:2])
    ledger.mark_sent("parent.0", None)
    assert ledger.in_flight("ds") == set(ks[2:])
    assert ledger.in_flight("other") == set()


def test_new_ledgers_have_no_per_event_batch_index(tmp_path: Path) -> None:
    # which events a batch carried comes from its keys row: one B-tree entry per event, not two
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("b1", "ds", keys(3))
    indexes = sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'capi_ledger_events' AND sql IS NOT NULL")
    assert indexes.fetchall() == []


def test_in_flight_reads_batches_written_before_they_kept_their_keys(tmp_path: Path) -> None:
    # a ledger from an earlier version: the index on batch_id, no keys rows
    path = tmp_path / "ledger.sqlite"
    ks = keys(3)
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("old", "ds", ks)
        ledger.mark_sending("new", "ds", [("Lead", "n1")])
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX ix_capi_ledger_events_batch ON capi_ledger_events (batch_id)")
    db.execute("DELETE FROM capi_ledger_batch_keys WHERE batch_id = 'old'")
    db.commit()
    db.close()
    with Ledger.open(str(path)) as ledger:
        assert ledger.in_flight("ds") == {*ks, ("Lead", "n1")}
        ledger.mark_sent("old", None)
        assert ledger.in_flight("ds") == {("Lead", "n1")}


def test_datasets_are_separate(ledger: Ledger) -> None:
    ks = keys(3)
    ledger.mark_sending("a", "ds-A", ks)
    ledger.mark_sent("a", None)
    assert ledger.filter_unsent("ds-A", ks) == set(ks)
    assert ledger.filter_unsent("ds-B", ks) == set()
    assert ledger.in_flight("ds-B") == set()


def test_event_name_is_part_of_the_key(ledger: Ledger) -> None:
    ledger.mark_sending("a", "ds", [("Purchase", "x1")])
    ledger.mark_sent("a", None)
    assert ledger.filter_unsent("ds", [("Purchase", "x1"), ("Lead", "x1")]) == {("Purchase", "x1")}


def test_duplicate_keys_in_one_batch(ledger: Ledger) -> None:
    ledger.mark_sending("a", "ds", [("Purchase", "x1"), ("Purchase", "x1")])
    assert ledger.in_flight("ds") == {("Purchase", "x1")}


def test_threads_write_concurrently(ledger: Ledger) -> None:
    def work(t: int) -> None:
        for b in range(20):
            batch = f"t{t}-b{b}"
            ledger.mark_sending(batch, "ds", keys(50, prefix=f"{batch}-"))
            ledger.mark_sent(batch, None)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.counts("ds") == {"sent": 4 * 20 * 50}


@pytest.mark.parametrize("backend", ["path", "postgresql"])
@pytest.mark.parametrize("index_every", [100_000, 250])
def test_processes_write_concurrently(tmp_path: Path, index_every: int, backend: str,
                                      request: pytest.FixtureRequest) -> None:
    # 250: both processes flush every few batches, each taking the other's unindexed batches along
    path = str(tmp_path / "shared.sqlite") if backend == "path" else request.getfixturevalue("postgres_url")
    Ledger.open(path).close()
    code = (
        "import sys\nfrom capi_pipeline import ledger\nfrom capi_pipeline.ledger import Ledger\n"
        f"ledger.INDEX_EVERY_KEYS = {index_every}\n"
        "p = sys.argv[1]\nwith Ledger.open(sys.argv[2]) as l:\n"
        "    mine = []\n"
        "    for b in range(30):\n"
        "        ks = [('Purchase', f'{p}-{b}-{i}') for i in range(100)]\n"
        "        l.mark_sending(f'{p}-{b}', 'ds', ks)\n"
        "        l.mark_sent(f'{p}-{b}', None)\n"
        "        mine += ks\n"
        "        assert l.filter_unsent('ds', mine) == set(mine)  # while the other one writes and flushes\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p), str(path)]) for p in range(2)]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    with Ledger.open(str(path)) as ledger:
        assert ledger.counts("ds") == {"sent": 2 * 30 * 100}


def test_filter_is_fast_enough(ledger: Ledger) -> None:
    n = 50_000
    ks = keys(n)
    for start in range(0, n, 1000):
        ledger.mark_sending(f"b{start}", "ds", ks[start:start + 1000])
        ledger.mark_sent(f"b{start}", None)
    wanted = ks + keys(n, prefix="new")
    started = time.perf_counter()
    found: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), 1000):
        found |= ledger.filter_unsent("ds", wanted[start:start + 1000])
    elapsed = time.perf_counter() - started
    assert found == set(ks)
    assert elapsed < 3.0  # ~0.6 s here; 1M keys take ~6 s (per-batch lookups overlap the uploads)


def test_keys_reach_the_events_table_in_one_sorted_flush(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ks = keys(5)
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("b1", "ds", ks[:3])
        ledger.mark_sending("b2", "ds", ks[3:])
        ledger.mark_sent("b1", None)
        assert indexed_keys(path) == 0  # nothing per event yet: three small rows per batch
        assert ledger.filter_unsent("ds", ks) == set(ks[:3])
        assert ledger.in_flight("ds") == set(ks[3:])
    # closing flushed: the same answers from capi_ledger_events alone
    assert indexed_keys(path) == 5
    assert sqlite3.connect(path).execute("SELECT count(*) FROM capi_ledger_unindexed").fetchone()[0] == 0
    with Ledger.open(str(path)) as ledger:
        assert ledger.states("ds", ks) == {**dict.fromkeys(ks[:3], "sent"), **dict.fromkeys(ks[3:], "sending")}


def test_a_flush_comes_every_index_every_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "INDEX_EVERY_KEYS", 4)
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("b1", "ds", keys(3))
        assert indexed_keys(path) == 0
        ledger.mark_sending("b2", "ds", keys(2, prefix="f"))
        assert indexed_keys(path) == 5


@pytest.mark.parametrize("backend", ["path", "sqlite_url", "postgresql"])
def test_a_run_killed_before_its_flush_loses_nothing(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    # the first ledger is never closed (kill -9): its batches stay unindexed, and the next run reads them (their
    # keys rows are the only record of which events they carried)
    path = tmp_path / "ledger.sqlite"
    location = {"path": str(path), "sqlite_url": f"sqlite:///{path}"}.get(backend) \
        or request.getfixturevalue("postgres_url")
    ks = keys(4)
    dead = Ledger.open(location)
    dead.mark_sending("b1", "ds", ks[:2])
    dead.mark_sent("b1", None)
    dead.mark_sending("b2", "ds", ks[2:])
    with Ledger.open(location) as ledger:
        assert ledger.filter_unsent("ds", ks) == set(ks[:2])
        assert ledger.in_flight("ds") == set(ks[2:])
        ledger.mark_sending("b3", "ds", ks[2:])  # the resend
        ledger.mark_sent("b3", None)
        assert ledger.counts("ds") == {"sent": 4}  # counting flushes every unindexed batch, the dead one's too
    dead.engine.dispose()
    with Ledger.open(location) as ledger:
        assert ledger.states("ds", ks) == dict.fromkeys(ks, "sent")
        assert ledger.engine.dialect.name == ("postgresql" if backend == "postgresql" else "sqlite")
    if backend != "postgresql":
        assert indexed_keys(path) == 4


def test_the_later_batch_wins_across_the_flush(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ks = keys(2)
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("first", "ds", ks)
        ledger.mark_sent("first", None)
        ledger.flush()
        ledger.mark_sending("forced", "ds", ks[:1])  # a forced resend, unindexed, newer than the table's row
        assert ledger.states("ds", ks) == {ks[0]: "sending", ks[1]: "sent"}
        ledger.mark_failed("forced", "gave up")
        assert ledger.states("ds", ks) == {ks[0]: "failed", ks[1]: "sent"}
        ledger.flush()
        assert ledger.states("ds", ks) == {ks[0]: "failed", ks[1]: "sent"}


def test_the_later_batch_wins_inside_one_flush(tmp_path: Path) -> None:
    # both batches unindexed when the flush comes; the later one sorts first by id, so only seq decides
    path = tmp_path / "ledger.sqlite"
    ks = keys(3)
    with Ledger.open(str(path)) as ledger:
        ledger.mark_sending("zz-first", "ds", ks)
        ledger.mark_failed("zz-first", "timeout")
        ledger.mark_sending("aa-resend", "ds", ks[1:] + ks[1:2])  # a key twice in one batch, too
        ledger.mark_sent("aa-resend", None)
        ledger.flush()
        assert ledger.states("ds", ks) == {ks[0]: "failed", ks[1]: "sent", ks[2]: "sent"}
    rows = sqlite3.connect(path).execute(
        "SELECT event_name, event_id, batch_id FROM capi_ledger_events ORDER BY event_id").fetchall()
    assert rows == [(n, i, "zz-first" if (n, i) == ks[0] else "aa-resend") for n, i in sorted(ks, key=lambda k: k[1])]


def test_a_flush_by_another_process_is_seen_wholly(tmp_path: Path) -> None:
    # two ledgers on one file (two Airflow tasks): the reader's cached view is rebuilt after the other's flush
    path = tmp_path / "ledger.sqlite"
    ks = keys(6)
    with Ledger.open(str(path)) as writer, Ledger.open(str(path)) as reader:
        writer.mark_sending("b1", "ds", ks[:3])
        writer.mark_sent("b1", None)
        assert reader.filter_unsent("ds", ks) == set(ks[:3])
        writer.mark_sending("b2", "ds", ks[3:])
        assert reader.in_flight("ds") == set(ks[3:])
        writer.flush()
        writer.mark_sending("b3", "ds", ks[:1])
        assert reader.states("ds", ks) == {ks[0]: "sending", **dict.fromkeys(ks[1:3], "sent"),
                                           **dict.fromkeys(ks[3:], "sending")}
        assert reader.filter_unsent("ds", ks) == set(ks[1:3])


def test_a_sqlalchemy_url_reads_the_unindexed_batches_too(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ks = keys(3)
    with Ledger.open(str(path)) as fast, Ledger.open(f"sqlite:///{path}") as through_sqlalchemy:
        fast.mark_sending("b1", "ds", ks[:2])
        fast.mark_sent("b1", None)
        fast.mark_sending("b2", "ds", ks[2:])
        assert through_sqlalchemy.states("ds", ks) == {ks[0]: "sent", ks[1]: "sent", ks[2]: "sending"}
        assert through_sqlalchemy.in_flight("ds") == {ks[2]}


def test_batches_after_a_flush_are_never_taken_for_the_flushed_ones(tmp_path: Path) -> None:
    # the unindexed rows' numbers keep growing after a flush empties the table (a reused number made a reader
    # keep the flushed batch's keys as if they were the new batch's)
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(str(path)) as writer, Ledger.open(str(path)) as reader:
        writer.mark_sending("b1", "ds", keys(2))
        assert reader.in_flight("ds") == set(keys(2))
        writer.mark_sent("b1", None)
        writer.flush()
        writer.mark_sending("b2", "ds", keys(2, prefix="f"))
        assert reader.states("ds", keys(2) + keys(2, prefix="f")) == {
            **dict.fromkeys(keys(2), "sent"), **dict.fromkeys(keys(2, prefix="f"), "sending")}


# ---------------------------------------------------------------------------------------------- leases

def test_a_second_run_of_the_same_file_is_refused_while_the_first_delivers(ledger: Ledger) -> None:
    """Two runs of one partition at once would both send what neither has marked sent: the second is refused
    (RunInProgressError, exit 1: Airflow's retries wait), other files go on, and the lease ends with its run."""
    from capi_pipeline.errors import RunInProgressError

    with ledger.lease(["p/2026-12-03/1/part-0.parquet", "p/2026-12-03/1/part-1.parquet"]):
        with pytest.raises(RunInProgressError, match="part-1.parquet: another run is delivering it") as err:
            with ledger.lease(["p/2026-12-03/1/part-1.parquet"]):
                pass
        assert err.value.exit_code == 1
        with ledger.lease(["p/2026-12-03/1/part-2.parquet"]):  # another file of the day: its own lease
            pass
    with ledger.lease(["p/2026-12-03/1/part-1.parquet"]):  # released with the first run
        pass


def test_a_dead_run_s_lease_is_taken_over(ledger: Ledger) -> None:
    """A run killed on this host (its pid gone) is taken over at once; one silent elsewhere after stale_after_s."""
    import socket

    from capi_pipeline.ledger import leases

    now = time.time()
    with ledger.engine.begin() as conn:
        conn.execute(leases.insert().values(name="dead", owner=f"{socket.gethostname()}:999999999:x", heartbeat_at=now))
        conn.execute(leases.insert().values(name="silent", owner="other-host:12:x", heartbeat_at=now - 60))
        conn.execute(leases.insert().values(name="alive", owner="other-host:13:x", heartbeat_at=now))
    with ledger.lease(["dead"]):
        pass
    with ledger.lease(["silent"], stale_after_s=30):
        pass
    from capi_pipeline.errors import RunInProgressError

    with pytest.raises(RunInProgressError, match="on other-host"):
        with ledger.lease(["alive"]):
            pass


def test_the_lease_is_renewed_while_the_run_goes_on(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from capi_pipeline.ledger import leases

    monkeypatch.setattr(ledger_module, "_LEASE_RENEW_S", 0.05)
    with ledger.lease(["long"]):
        with ledger.engine.begin() as conn:
            first = conn.execute(leases.select()).one().heartbeat_at
        time.sleep(0.3)
        with ledger.engine.begin() as conn:
            assert conn.execute(leases.select()).one().heartbeat_at > first
