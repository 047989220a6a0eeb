"""``analyze --format parquet``: the flow records as a Parquet file, one row per flow, the EVE fields as columns
(nested objects — ``flow``, ``chokepoint``, ``tls``, ``dns`` … — as struct columns), for DuckDB and pandas.

The schema is the union of what the records hold, found in a first pass over them (pyarrow's inference per
batch, unified with type promotion: a field that is an integer in one flow and a float in another is a
double); the second pass writes the rows in batches, so memory stays bounded by one batch. A field absent
from a flow is null in its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

#: Rows converted and written at a time.
BATCH = 20_000


def _batches(records: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    it = iter(records)
    while batch := list(islice(it, BATCH)):
        yield batch


def write_parquet(records: Callable[[], Iterable[dict[str, Any]]], path: str | Path) -> int:
    """Write every record of ``records()`` (called twice: schema, then rows) to ``path``; returns the rows.
    Raises ``ImportError`` when pyarrow is not installed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pa.schema(list(pa.array(batch).type)) for batch in _batches(records())]
    if schemas:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    else:
        schema = pa.schema([("event_type", pa.string())])
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in _batches(records()):
            array = pa.array(batch, type=pa.struct(list(schema)))
            writer.write_table(pa.Table.from_struct_array(array))
            rows += len(batch)
    return rows
