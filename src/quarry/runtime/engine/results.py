"""Step outputs and their serialised form (the checkpoint a journal stores).

An output is a tree: a table (``execute_sql``), a text (``formatter``), a list of
per-iteration maps (``loop_sequential``) or a map of task outputs (``workflow``,
``conditional``). :meth:`StepResult.to_bytes` writes it as a small JSON header
followed by one Arrow IPC stream per table, so a checkpoint round-trips exactly,
types included.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

_MAGIC = b"QSR1"


@dataclass(frozen=True)
class TableOutput:
    table: pa.Table


@dataclass(frozen=True)
class TextOutput:
    text: str


@dataclass(frozen=True)
class ListOutput:
    items: tuple[dict[str, Output], ...]


@dataclass(frozen=True)
class MapOutput:
    outputs: dict[str, Output]


Output = TableOutput | TextOutput | ListOutput | MapOutput


@dataclass(frozen=True)
class StepResult:
    """What a finished step leaves: its output and JSON-able facts (rows, SQL, exports)."""

    output: Output
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        tables: list[bytes] = []
        header = json.dumps(
            {"output": _encode(self.output, tables), "meta": self.meta},
            separators=(",", ":"),
        ).encode()
        parts = [_MAGIC, struct.pack(">I", len(header)), header]
        for blob in tables:
            parts += [struct.pack(">Q", len(blob)), blob]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> StepResult:
        if data[:4] != _MAGIC:
            raise ValueError("not a serialised step result")
        (size,) = struct.unpack(">I", data[4:8])
        header = json.loads(data[8 : 8 + size])
        offset = 8 + size
        tables: list[pa.Table] = []
        while offset < len(data):
            (length,) = struct.unpack(">Q", data[offset : offset + 8])
            offset += 8
            tables.append(table_from_ipc(data[offset : offset + length]))
            offset += length
        return cls(output=_decode(header["output"], tables), meta=header["meta"])


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def table_from_ipc(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def row_count(output: Output) -> int | None:
    return output.table.num_rows if isinstance(output, TableOutput) else None


def _encode(output: Output, tables: list[bytes]) -> dict[str, Any]:
    if isinstance(output, TableOutput):
        tables.append(table_to_ipc(output.table))
        return {"table": len(tables) - 1}
    if isinstance(output, TextOutput):
        return {"text": output.text}
    if isinstance(output, ListOutput):
        return {
            "list": [[[k, _encode(v, tables)] for k, v in item.items()] for item in output.items]
        }
    return {"map": [[k, _encode(v, tables)] for k, v in output.outputs.items()]}


def _decode(node: dict[str, Any], tables: list[pa.Table]) -> Output:
    if "table" in node:
        return TableOutput(tables[node["table"]])
    if "text" in node:
        return TextOutput(node["text"])
    if "list" in node:
        return ListOutput(tuple({k: _decode(v, tables) for k, v in item} for item in node["list"]))
    return MapOutput({k: _decode(v, tables) for k, v in node["map"]})
