"""Backups are taken through DuckDB, so they hold what is committed, WAL included; a restore puts
back exactly the backup, never the warehouse's stale WAL on top of it.

Every test uses a real DuckDB file, and the rows that matter are left in the `.wal` the way it
happens for real: by another process that committed and then never checkpointed (a writer killed
after its commit, or one whose checkpoint on close was turned off). Each test checks the `.wal`
is there, and that a bare copy of the file would have missed those rows, before going on.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import duckdb
import pytest

import pipelines.warehouse as warehouse_module
from pipelines.backups import backup_dir, list_backups, restore_backup, take_backup
from pipelines.cli import main
from pipelines.warehouse import Warehouse, WarehouseBusy, wal_path

# How another process leaves committed rows in the .wal and nowhere else.
WAL_WRITERS = {
    # DuckDB checkpoints on a clean close; a process killed after COMMIT never gets there.
    "killed after commit": """
import os, signal, sys, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute(sys.argv[2])
os.kill(os.getpid(), signal.SIGKILL)
""",
    # A session (a notebook, say) that closes without checkpointing.
    "no checkpoint on close": """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("PRAGMA disable_checkpoint_on_shutdown")
conn.execute(sys.argv[2])
conn.close()
""",
}


def write_to_wal_only(path: Path, sql: str, how: str = "killed after commit") -> None:
    """Run `sql` on the database at `path` in another process that commits and never
    checkpoints, and check the result is only in the WAL."""
    proc = subprocess.run(
        [sys.executable, "-c", WAL_WRITERS[how], str(path), sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    expected = -signal.SIGKILL if how == "killed after commit" else 0
    assert proc.returncode == expected, proc.stderr
    wal = wal_path(path)
    assert wal.exists() and wal.stat().st_size > 0, "the rows were meant to be in the WAL"


def ids(path: Path) -> list[int]:
    """The rows of table t at `path`, as DuckDB sees them (WAL included), read-only."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id").fetchall()]


def file_only_ids(path: Path, scratch: Path) -> list[int]:
    """What a bare copy of the file at `path` (no WAL) holds: what the old backup kept."""
    shutil.copyfile(path, scratch)
    try:
        return ids(scratch)
    finally:
        scratch.unlink()


def make_warehouse(tmp_path: Path, n: int = 3, **kwargs: float) -> Warehouse:
    wh = Warehouse(tmp_path / "processed" / "warehouse.duckdb", **kwargs)
    with wh.write() as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.execute("INSERT INTO t SELECT range FROM range(?)", [n])
    assert not wal_path(wh.path).exists()
    return wh


@contextmanager
def outside_session(path: Path, read_only: bool) -> Iterator[None]:
    """Another program (a DuckDB CLI, a notebook) with the file open, outside our lock."""
    code = (
        "import sys, time, duckdb\n"
        f"conn = duckdb.connect(sys.argv[1], read_only={read_only})\n"
        "print('open', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("how", sorted(WAL_WRITERS))
def test_a_backup_holds_rows_committed_only_to_the_wal(tmp_path: Path, how: str) -> None:
    wh = make_warehouse(tmp_path)
    write_to_wal_only(wh.path, "INSERT INTO t VALUES (100), (101)", how)
    assert ids(wh.path) == [0, 1, 2, 100, 101]
    assert file_only_ids(wh.path, tmp_path / "bare.duckdb") == [0, 1, 2]  # what a copy missed

    backup = take_backup(wh, keep=3)

    assert backup is not None
    assert ids(backup) == [0, 1, 2, 100, 101]
    assert file_only_ids(backup, tmp_path / "bare.duckdb") == [0, 1, 2, 100, 101]
    # One self-contained file: nothing beside it, no partial copy left behind.
    assert [p.name for p in backup_dir(wh).iterdir()] == [backup.name]
    assert ids(wh.path) == [0, 1, 2, 100, 101]  # the warehouse lost nothing either


def test_the_per_run_snapshot_holds_the_wal_too_and_none_yet_is_false(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    assert wh.snapshot(tmp_path / "warehouse.run-1.duckdb") is False
    assert not wh.path.exists()  # taking no snapshot created no warehouse
    wh = make_warehouse(tmp_path)
    write_to_wal_only(wh.path, "DELETE FROM t WHERE id = 0")
    snap = wh.path.with_name("warehouse.run-2.duckdb")
    assert wh.snapshot(snap) is True
    assert ids(snap) == [1, 2]
    assert not wal_path(snap).exists()


def test_a_backup_where_the_kernel_cannot_copy_goes_through_a_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`os.copy_file_range` refused (another filesystem, an older kernel) or missing (not
    Linux): the same backup, byte for byte."""
    wh = make_warehouse(tmp_path, n=200_000)
    write_to_wal_only(wh.path, "INSERT INTO t VALUES (-1)")
    kernel = take_backup(wh, keep=5)

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    refused = take_backup(wh, keep=5)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    buffered = take_backup(wh, keep=5)
    assert kernel is not None and refused is not None and buffered is not None
    assert kernel.read_bytes() == refused.read_bytes() == buffered.read_bytes()
    assert ids(buffered)[:2] == [-1, 0] and len(ids(buffered)) == 200_001


def test_backups_are_pruned_to_the_last_n(tmp_path: Path) -> None:
    wh = make_warehouse(tmp_path)
    taken = [take_backup(wh, keep=2) for _ in range(4)]
    assert list_backups(wh) == taken[-2:]


def test_the_backup_rotated_out_is_where_the_next_one_starts(tmp_path: Path) -> None:
    """The oldest backup, pruned, becomes the spare the next backup is made in: each kept
    backup its own file, holding the warehouse as it was when it was taken."""
    wh = make_warehouse(tmp_path)
    first = take_backup(wh, keep=1)
    assert first is not None and not wh.spare(backup_dir(wh)).exists()
    with wh.write() as conn:
        conn.execute("INSERT INTO t VALUES (10)")
    second = take_backup(wh, keep=1)
    assert second is not None and list_backups(wh) == [second]
    inode = wh.spare(backup_dir(wh)).stat().st_ino  # the first backup's file
    with wh.write() as conn:
        conn.execute("INSERT INTO t VALUES (11)")
    third = take_backup(wh, keep=1)
    assert third is not None and third.stat().st_ino == inode
    assert ids(third) == [0, 1, 2, 10, 11]
    assert third.read_bytes() == wh.path.read_bytes()
    assert wh.spare(backup_dir(wh)).stat().st_ino != inode  # now the second backup's file


def test_a_restore_does_not_replay_the_warehouses_stale_wal(tmp_path: Path) -> None:
    wh = make_warehouse(tmp_path)
    backup = take_backup(wh, keep=3)
    assert backup is not None
    # After the backup: a commit that stays in the WAL (a run killed just after it), and one
    # that reached the file.
    with wh.write() as conn:
        conn.execute("DELETE FROM t WHERE id = 1")
    write_to_wal_only(wh.path, "INSERT INTO t VALUES (200)")
    assert ids(wh.path) == [0, 2, 200]

    assert restore_backup(wh) == backup

    assert not wal_path(wh.path).exists()
    assert ids(wh.path) == [0, 1, 2]
    # And it stays that way once written to: nothing of the old WAL comes back later.
    with wh.write() as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    assert ids(wh.path) == [0, 1, 2, 3]
    assert not list(wh.path.parent.glob("*.restoring*"))


def test_a_wal_beside_a_backup_is_part_of_it_and_the_backup_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    """Our backups have no WAL; one opened read-write by a DuckDB CLI can get one. DuckDB shows
    its rows whenever it opens the backup, so the restore brings them back, in a warehouse
    without a WAL of its own."""
    wh = make_warehouse(tmp_path)
    backup = take_backup(wh, keep=3)
    assert backup is not None
    write_to_wal_only(backup, "INSERT INTO t VALUES (300)")
    backup_bytes, backup_wal_bytes = backup.read_bytes(), wal_path(backup).read_bytes()
    write_to_wal_only(wh.path, "INSERT INTO t VALUES (400)")

    restore_backup(wh, backup.name)

    assert not wal_path(wh.path).exists()
    assert file_only_ids(wh.path, tmp_path / "bare.duckdb") == [0, 1, 2, 300]
    assert backup.read_bytes() == backup_bytes
    assert wal_path(backup).read_bytes() == backup_wal_bytes


def test_while_the_backup_copies_the_file_no_other_program_can_open_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is made under DuckDB's own lock on the file, which also keeps out the programs
    our file lock cannot (a CLI, a notebook), until the copy is complete."""
    wh = make_warehouse(tmp_path)
    refusals: list[str] = []
    real_copy = warehouse_module._copy_durably

    def open_elsewhere() -> str:
        """What another process hears when it opens the warehouse read-only."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, duckdb; duckdb.connect(sys.argv[1], True)",
                str(wh.path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return out.stderr if out.returncode else "opened"

    def copy_and_probe(source: BinaryIO, dest: Path) -> None:
        refusals.append(open_elsewhere())
        real_copy(source, dest)
        # And after: closing any descriptor of the file drops the process's POSIX locks on it,
        # DuckDB's too, so a copy that opened and closed the file itself would let others in.
        refusals.append(open_elsewhere())

    monkeypatch.setattr(warehouse_module, "_copy_durably", copy_and_probe)
    assert wh.snapshot(tmp_path / "snap.duckdb")
    assert len(refusals) == 2
    assert all("could not set lock" in r.lower() for r in refusals), refusals


def test_a_backup_waits_for_an_outside_session_instead_of_copying_under_it(
    tmp_path: Path,
) -> None:
    wh = make_warehouse(tmp_path, lock_timeout_s=1.0)
    write_to_wal_only(wh.path, "INSERT INTO t VALUES (100)")
    with outside_session(wh.path, read_only=False), pytest.raises(WarehouseBusy):
        take_backup(wh, keep=3)
    assert list(backup_dir(wh).iterdir()) == []  # nothing half-taken
    backup = take_backup(wh, keep=3)  # and once it has closed
    assert backup is not None and ids(backup) == [0, 1, 2, 100]


def test_a_restore_waits_for_an_outside_writer_and_leaves_the_warehouse_alone(
    tmp_path: Path,
) -> None:
    wh = make_warehouse(tmp_path, lock_timeout_s=1.0)
    backup = take_backup(wh, keep=3)
    assert backup is not None
    with wh.write() as conn:
        conn.execute("INSERT INTO t VALUES (5)")
    with outside_session(wh.path, read_only=False), pytest.raises(WarehouseBusy):
        restore_backup(wh)
    assert ids(wh.path) == [0, 1, 2, 5]
    assert sorted(p.name for p in wh.path.parent.iterdir()) == [
        "backups",
        "warehouse.duckdb",
        "warehouse.duckdb.lock",
    ]


def test_gutsignal_backup_of_a_warehouse_duckdb_cannot_read_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of a damaged file would only push a good backup out of the last N."""
    wh = make_warehouse(tmp_path / "data")
    good = take_backup(wh, keep=1)
    with open(wh.path, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 1024)
    assert main(["backup", "--project-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "could not be read" in err and "no backup was taken" in err
    assert list_backups(wh) == [good]
