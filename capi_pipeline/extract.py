"""Read one warehouse partition (parquet, CSV or JSON lines) as pandas chunks with source row numbers.

The only place that opens warehouse files. A file that cannot be read raises `InputError` naming the file;
the message never quotes the file's content.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capi_pipeline.errors import InputError

__all__ = ["Chunk", "list_partition", "read_chunks", "count_rows", "display_name", "kept_rows", "without_rows"]


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of one source file; row numbers are 1-based data rows (header not counted)."""

    file: str
    first_row: int
    frame: pd.DataFrame

    @property
    def rows(self) -> range:
        return range(self.first_row, self.first_row + len(self.frame))


def list_partition(pattern: Path, *, max_files: int = 10_000) -> list[Path]:
    """The files of one partition, sorted so every run sees them in the same order."""
    files = sorted(Path(p) for p in glob.glob(str(pattern)) if Path(p).is_file())
    if len(files) > max_files:
        raise InputError(f"{pattern}: {len(files)} files match, more than source.max_files={max_files}")
    return files


def display_name(path: Path, base: Path) -> str:
    """The file as reports name it: relative to the pipeline folder when inside it."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def read_chunks(path: Path, fmt: str, batch_rows: int, *, name: str | None = None,
                delimiter: str = ",") -> Iterator[Chunk]:
    """Stream a file as chunks of at most `batch_rows` rows; memory stays bounded by the chunk size."""
    label = name or str(path)
    for first, data in read_raw(path, fmt, batch_rows, name=label, delimiter=delimiter):
        try:
            frame = to_frame(data)
        except Exception as exc:
            if type(exc).__module__.startswith("pyarrow") or isinstance(exc, (ValueError, TypeError)):
                raise InputError(f"{label}: cannot read as {fmt} (rule: readable_file; {type(exc).__name__})") from None
            raise
        yield Chunk(file=label, first_row=first, frame=frame)


def read_raw(path: Path, fmt: str, batch_rows: int, *, name: str | None = None,
             delimiter: str = ",") -> Iterator[tuple[int, Any]]:
    """`(first_row, data)` per chunk, `data` still as read: an Arrow RecordBatch (parquet) or a DataFrame.

    Same chunks and row numbers as `read_chunks`; a RecordBatch is cheap to hand to another process, and
    `to_frame` turns either into the chunk's frame. `delimiter`: a CSV's field separator (`source.delimiter`).
    """
    label = name or str(path)
    first = 1
    try:
        for data in _frames(path, fmt, batch_rows, delimiter):
            yield first, data
            first += data.num_rows if hasattr(data, "num_rows") else len(data)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, ImportError) as exc:
        raise InputError(f"{label}: cannot read as {fmt} (rule: readable_file; {type(exc).__name__})") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / ArrowException family
        if type(exc).__module__.startswith("pyarrow"):
            raise InputError(f"{label}: cannot read as {fmt} (rule: readable_file; {type(exc).__name__})") from None
        raise


def to_frame(data: Any) -> pd.DataFrame:
    """The pandas frame of one `read_raw` chunk (index 0..n-1)."""
    frame = data.to_pandas() if hasattr(data, "num_rows") else data
    return frame.reset_index(drop=True)


def without_rows(frame: pd.DataFrame, first_row: int, rejected: set[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """A chunk's frame without the rows whose source row numbers are in `rejected` (index 0..n-1), and the
    source row number of each row kept."""
    rows = np.arange(first_row, first_row + len(frame))
    keep = kept_rows(first_row, len(frame), rejected)
    if keep is None:
        return frame, rows
    return frame[keep].reset_index(drop=True), rows[keep]


def kept_rows(first_row: int, n: int, rejected: set[int]) -> np.ndarray | None:
    """Which of a chunk's `n` rows (source rows from `first_row`) are not in `rejected`; None: all of them."""
    if not rejected:
        return None
    rows = np.arange(first_row, first_row + n)
    return ~np.isin(rows, np.fromiter(rejected, dtype=np.int64, count=len(rejected)))


def count_rows(path: Path, fmt: str) -> int | None:
    """Row count from metadata where the format has it (parquet), else None."""
    if fmt != "parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:
        return None


def _frames(path: Path, fmt: str, batch_rows: int, delimiter: str = ",") -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if pf.metadata.num_rows == 0:
            yield pf.schema_arrow.empty_table().to_pandas()
            return
        yield from pf.iter_batches(batch_size=batch_rows)
    elif fmt == "csv":
        # Every CSV cell is text: types are the contract's and the mapping's business, not the reader's guess.
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=batch_rows,
                             encoding="utf-8", sep=delimiter)
        empty = True
        for frame in reader:
            empty = False
            yield frame
        if empty:
            yield pd.read_csv(path, dtype=str, nrows=0, sep=delimiter)
    elif fmt == "jsonl":
        reader = pd.read_json(path, lines=True, chunksize=batch_rows, dtype=False)
        for frame in reader:
            yield frame
    else:
        raise InputError(f"{path}: unknown source format {fmt!r}")
