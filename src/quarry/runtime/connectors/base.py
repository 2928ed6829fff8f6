"""The connector port: run one SQL statement with bound values, get an Arrow table.

The engine renders SQL with :class:`BoundSql`: values passed through the ``param()``
template function are not spliced into the text but left as unique markers and
collected in order. Each connector turns the markers into its driver's placeholder
syntax (``$1`` for DuckDB, ``%s`` for psycopg) at the last moment, so the rendered
text never has to guess the dialect and a marker cannot be confused with the user's
own ``?``, ``$1`` or ``%`` characters.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from quarry.core.errors import QuarryError


class ConnectorError(QuarryError):
    """The database refused the statement or could not be reached."""

    status_code = 422
    code = "connector_error"


@dataclass(frozen=True)
class BoundSql:
    """Rendered SQL text with value markers ``<token><index><token>`` and the values."""

    text: str
    params: tuple[Any, ...] = ()
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def read_only(self) -> float | None:
        """Seconds the statement may run, when it must run read-only (an agent's SQL,
        ``quarry.agents.tools.readonly``): each connector then uses its database's own
        read-only mode. None for a workflow's SQL."""
        value = self.extra.get("read_only")
        return None if value is None else float(value)

    @property
    def plan_only(self) -> bool:
        """Check (plan) the read-only statement without running it, where the database
        checks by a dry run rather than by ``EXPLAIN`` (BigQuery)."""
        return bool(self.extra.get("plan_only"))

    def marker(self, index: int) -> str:
        return f"{self.token}{index}{self.token}"

    def display(self) -> str:
        """The text with numbered placeholders (``$1``...), for logs and step details."""
        return self.to_driver(lambda i: f"${i + 1}")[0]

    def to_driver(
        self, placeholder: Callable[[int], str], *, escape_percent: bool = False
    ) -> tuple[str, list[Any]]:
        """Driver SQL and the parameter list, in the order the placeholders appear.

        A value used twice appears twice in the list, so positional drivers work.
        """
        if not self.params:
            return self.text, []
        text = self.text.replace("%", "%%") if escape_percent else self.text
        pattern = re.compile(re.escape(self.token) + r"(\d+)" + re.escape(self.token))
        values: list[Any] = []

        def swap(match: re.Match[str]) -> str:
            values.append(self.params[int(match.group(1))])
            return placeholder(len(values) - 1)

        return pattern.sub(swap, text), values


class Connector(ABC):
    """One database of ``config.yml``, open for the length of a run.

    ``query`` may be called from several threads at once (loops with
    ``concurrency``); implementations give each thread its own session.
    """

    name: str
    dialect: str

    @abstractmethod
    def query(self, sql: BoundSql) -> pa.Table:
        """Run one statement; a statement without a result gives an empty table."""

    def interrupt(self) -> None:
        """Stop every statement running now, from another thread (a run cancelled or
        over its time); each fails with a :class:`ConnectorError`. A connector that
        talks HTTP closes its client here. Default: nothing can be interrupted."""
        return None

    @abstractmethod
    def close(self) -> None: ...
