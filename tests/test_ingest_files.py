"""The ingest's first step: a source's files listed as one frame, oldest first, hashed once.

A listing is a frame (`LISTING_SCHEMA`) and the hash memo a Parquet file, so a source of tens of
thousands of files costs a row each, not a Python object each (issue 19: the ingest's memory grew
with the number of files)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import pipelines.ingest.files as ingest_files
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest.files import LISTING_SCHEMA, HashMemo, file_identity, list_files, sha256_of

SOURCE = SourceConfig(
    name="cm",
    kind="diet",
    format="cronometer_servings",
    path="cm/**/*.csv",
    person=PersonSpec(from_folder=True),
)


def write(path: Path, text: str, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    write(raw / "cm" / "bob" / "b.csv", "bob's", 3e9)
    write(raw / "cm" / "ann" / "z.csv", "same", 1e9)
    write(raw / "cm" / "bob" / "a.csv", "same", 1e9)  # same time as ann's: the path decides
    write(raw / "cm" / "ann" / "old" / "x.csv", "older", 5e8)
    write(raw / "cm" / "ann" / "notes.txt", "not a csv", 1e9)
    (raw / "cm" / "dir.csv").mkdir()  # a folder the glob matches is not a file
    return raw


class CountingHashes:
    """Counts the files hashed (the memo should spare unchanged ones)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed: list[str] = []

        def counting(path: Path) -> str:
            self.hashed.append(path.name)
            return sha256_of(path)

        monkeypatch.setattr(ingest_files, "sha256_of", counting)


def test_the_glob_gives_sorted_paths_relative_to_the_raw_folder(raw: Path) -> None:
    assert SOURCE.files(raw) == [
        "cm/ann/old/x.csv",
        "cm/ann/z.csv",
        "cm/bob/a.csv",
        "cm/bob/b.csv",
    ]


def test_a_listing_is_a_frame_oldest_first_with_each_files_identity(raw: Path) -> None:
    listing = list_files(SOURCE, raw, HashMemo(None))
    assert listing.schema == pl.Schema(LISTING_SCHEMA)
    # Oldest first; files of the same second in path order.
    assert listing.select("order", "path").rows() == [
        (0, "cm/ann/old/x.csv"),
        (1, "cm/ann/z.csv"),
        (2, "cm/bob/a.csv"),
        (3, "cm/bob/b.csv"),
    ]
    for path, sha, file_id, size in listing.select(
        "path", "sha256", "file_id", "size_bytes"
    ).iter_rows():
        assert sha == sha256_of(raw / path)
        assert file_id == file_identity(SOURCE, raw / path, sha)
        assert size == (raw / path).stat().st_size
    # UTC, without a zone, as ingest_files records it.
    assert listing["modified_at"].to_list() == [
        datetime(1985, 11, 5, 0, 53, 20),
        datetime(2001, 9, 9, 1, 46, 40),
        datetime(2001, 9, 9, 1, 46, 40),
        datetime(2065, 1, 24, 5, 20),
    ]
    # The same bytes in two people's folders are two inputs; "older" is its own.
    assert listing["sha256"][1] == listing["sha256"][2]
    assert listing["file_id"].n_unique() == 4


def test_the_memo_spares_unchanged_files_and_forgets_removed_ones(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo_path = tmp_path / "memo" / "cm.parquet"
    counting = CountingHashes(monkeypatch)

    def listing() -> pl.DataFrame:
        memo = HashMemo(memo_path)
        found = list_files(SOURCE, raw, memo)
        memo.save()
        return found

    first = listing()
    assert sorted(counting.hashed) == ["a.csv", "b.csv", "x.csv", "z.csv"]

    counting.hashed.clear()
    os.utime(memo_path, ns=(10**18, 10**18))
    assert listing().equals(first)  # a night with nothing new hashes nothing
    assert counting.hashed == []
    assert memo_path.stat().st_mtime_ns == 10**18  # nor writes the same memo again

    # A new file, newer than the others (most nights): only it is hashed, and the memo written.
    write(raw / "cm" / "bob" / "c.csv", "bob's new day", 3.5e9)
    added = listing()
    assert counting.hashed == ["c.csv"]
    assert added.equals(list_files(SOURCE, raw, HashMemo(None)))
    assert pl.read_parquet(memo_path)["sha256"].equals(added["sha256"])
    (raw / "cm" / "bob" / "c.csv").unlink()
    counting.hashed.clear()

    # A changed file (new bytes, new time) is hashed again; a removed one leaves the memo.
    write(raw / "cm" / "bob" / "b.csv", "bob's, longer", 4e9)
    (raw / "cm" / "ann" / "old" / "x.csv").unlink()
    changed = listing()
    assert counting.hashed == ["b.csv"]
    assert changed["sha256"][-1] == sha256_of(raw / "cm" / "bob" / "b.csv")
    remembered = pl.read_parquet(memo_path)
    assert sorted(remembered["path"]) == ["cm/ann/z.csv", "cm/bob/a.csv", "cm/bob/b.csv"]

    # A touched file (a new time, the same bytes) is hashed again.
    os.utime(raw / "cm" / "bob" / "a.csv", (2e9, 2e9))
    counting.hashed.clear()
    listing()
    assert counting.hashed == ["a.csv"]

    # A removed file, and nothing to hash: its entry still leaves the memo.
    (raw / "cm" / "ann" / "z.csv").unlink()
    counting.hashed.clear()
    listing()
    assert counting.hashed == []
    assert sorted(pl.read_parquet(memo_path)["path"]) == ["cm/bob/a.csv", "cm/bob/b.csv"]


def test_a_damaged_memo_only_costs_hashing_again(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo_path = tmp_path / "cm.parquet"
    memo_path.write_bytes(b"PAR1 not really")
    counting = CountingHashes(monkeypatch)
    memo = HashMemo(memo_path)
    listing = list_files(SOURCE, raw, memo)
    memo.save()
    assert sorted(counting.hashed) == ["a.csv", "b.csv", "x.csv", "z.csv"]
    assert listing.equals(list_files(SOURCE, raw, HashMemo(None)))
    assert pl.read_parquet(memo_path).height == 4


def test_a_memo_with_repeated_rows_still_lists_each_file_once(raw: Path, tmp_path: Path) -> None:
    memo_path = tmp_path / "cm.parquet"
    memo = HashMemo(memo_path)
    listing = list_files(SOURCE, raw, memo)
    pl.concat([memo.known, memo.known]).write_parquet(memo_path)
    repeated = HashMemo(memo_path)
    assert list_files(SOURCE, raw, repeated).equals(listing)
    repeated.save()  # and is written again with a row per file
    assert pl.read_parquet(memo_path).height == listing.height
