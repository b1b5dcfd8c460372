"""extract.py: partitions listed in a stable order, files read in bounded chunks, bad files named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from capi_pipeline.errors import InputError
from capi_pipeline.extract import display_name, list_partition, read_chunks


def test_chunks_and_row_numbers(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": list(range(25)), "b": [f"x{i}" for i in range(25)]})
    df.to_parquet(tmp_path / "part-0.parquet")
    chunks = list(read_chunks(tmp_path / "part-0.parquet", "parquet", 10))
    assert [len(c.frame) for c in chunks] == [10, 10, 5]
    assert [c.first_row for c in chunks] == [1, 11, 21]
    assert list(chunks[2].rows) == [21, 22, 23, 24, 25]


@pytest.mark.parametrize("fmt, write", [
    ("csv", lambda df, p: df.to_csv(p, index=False)),
    ("jsonl", lambda df, p: df.to_json(p, orient="records", lines=True)),
])
def test_text_formats(tmp_path: Path, fmt: str, write) -> None:
    df = pd.DataFrame({"zip": ["02134", "94035"], "n": ["1", "2"]})
    path = tmp_path / f"f.{fmt}"
    write(df, path)
    chunks = list(read_chunks(path, fmt, 1))
    assert [len(c.frame) for c in chunks] == [1, 1]
    if fmt == "csv":  # every CSV cell stays text: no lost leading zeros
        assert chunks[0].frame["zip"].iloc[0] == "02134"


def test_corrupt_file_is_named_without_content(tmp_path: Path) -> None:
    bad = tmp_path / "part-1.parquet"
    bad.write_bytes(b"PAR1 secret@example.com not really parquet")
    with pytest.raises(InputError) as err:
        list(read_chunks(bad, "parquet", 10, name="offline/part-1.parquet"))
    assert "offline/part-1.parquet" in str(err.value)
    assert "secret" not in str(err.value)


def test_empty_parquet_file(tmp_path: Path) -> None:
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "e.parquet")
    chunks = list(read_chunks(tmp_path / "e.parquet", "parquet", 10))
    assert sum(len(c.frame) for c in chunks) == 0


def test_list_partition_sorted_and_bounded(tmp_path: Path) -> None:
    for name in ("part-2.parquet", "part-0.parquet", "part-1.parquet"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_partition(tmp_path / "part-*.parquet")] == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet"]
    with pytest.raises(InputError, match="max_files"):
        list_partition(tmp_path / "part-*.parquet", max_files=2)
    assert display_name(tmp_path / "part-0.parquet", tmp_path) == "part-0.parquet"
