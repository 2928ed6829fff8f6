"""The compile process: parses definition files for its parent, under resource limits.

Started by :mod:`quarry.factory.isolation` as ``python -m quarry.factory.compile_child
LIMITS_JSON``. It caps its own address space (``RLIMIT_AS``) and stack
(``RLIMIT_STACK``) before importing anything heavy, says ``ready``, then answers
requests on stdin/stdout until stdin closes (the parent went away):

* request: ``u32 path length, path (UTF-8), u32 data length, data`` (one file);
* reply: ``u32 length, JSON`` — ``{"ok": {kind, name, body, refs}}`` (``body`` and
  ``refs`` as canonical JSON text) or ``{"problems": [...]}``.

Replies are JSON, not pickle: the parent trusts nothing this process sends.
A file that exhausts memory ends the process after its reply (``{"fatal": "memory"}``);
one that crashes it or runs too long is the parent's to report.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import traceback
from typing import Any, BinaryIO

_LENGTH = struct.Struct(">I")


def _set_limits(memory: int, stack: int) -> None:
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if stack > 0:
        _soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
        capped = stack if hard == resource.RLIM_INFINITY else min(stack, hard)
        resource.setrlimit(resource.RLIMIT_STACK, (capped, hard))


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def _read_request(stream: BinaryIO) -> tuple[str, bytes] | None:
    header = _read_exact(stream, 4)
    if header is None:
        return None
    path = _read_exact(stream, _LENGTH.unpack(header)[0])
    header = _read_exact(stream, 4)
    if path is None or header is None:
        return None
    data = _read_exact(stream, _LENGTH.unpack(header)[0])
    if data is None:
        return None
    return path.decode("utf-8"), data


def _reply(stream: BinaryIO, message: dict[str, Any]) -> None:
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def main() -> None:
    limits = json.loads(sys.argv[1])
    _set_limits(int(limits["memory_bytes"]), int(limits["stack_bytes"]))
    # The protocol owns the real stdout; anything printed goes to stderr (the log).
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer

    from quarry.core.errors import CompileFailed
    from quarry.core.hashing import canonical_json
    from quarry.definitions.parse import YamlLimits, parse_definition
    from quarry.definitions.semantic_rules import warm
    from quarry.definitions.task_positions import positions_json

    warm()  # before "ready": a file's time limit must not pay for the SQL parser's import

    yaml_limits = YamlLimits(
        max_depth=int(limits["yaml_max_depth"]),
        max_alias_nodes=int(limits["yaml_max_alias_nodes"]),
    )
    _reply(out, {"ready": True})
    while (request := _read_request(stdin)) is not None:
        path, data = request
        try:
            parsed = parse_definition(path, data, yaml_limits)
            body = canonical_json(parsed.body).decode("utf-8")
            refs = canonical_json([r.to_json() for r in parsed.refs]).decode("utf-8")
            warnings = [w.__dict__ for w in getattr(parsed, "warnings", ())]
            ok = {"kind": parsed.kind.value, "name": parsed.name, "body": body, "refs": refs}
            positions = positions_json(parsed.tasks)
            message: dict[str, Any] = {"ok": {**ok, "warnings": warnings, "positions": positions}}
        except CompileFailed as failed:
            message = {"problems": [p.__dict__ for p in failed.problems]}
        except MemoryError:
            _reply(out, {"fatal": "memory"})
            return
        except RecursionError:
            message = {"fatal": "recursion"}
        except Exception as exc:  # a bug: report it on the file, log it here
            traceback.print_exc()
            message = {"error": f"{type(exc).__name__}: {exc}"}
        _reply(out, message)


if __name__ == "__main__":
    main()
