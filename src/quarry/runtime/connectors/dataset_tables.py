"""The tables of a DuckDB ``dataset:`` folder, named as Oxy names them.

Oxy makes every ``.csv`` and ``.parquet`` file directly in the folder (not in
sub-folders; the extension in any case) a table named by the file's stem, slugified
with ``_`` (``Order Items.csv`` -> ``order_items``); when a CSV and a Parquet file
share a stem, the Parquet file wins. Oxy copies each file into a table; Quarry
creates a *view* over the file instead, so a large file costs nothing until a query
reads it (creating the view only reads the file's header to learn its columns).

Reading the files by path (``FROM 'orders.csv'``) keeps working alongside.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import duckdb

TABLE_EXTENSIONS = (".csv", ".parquet")


def slugify(stem: str) -> str:
    """Oxy's table name of a file stem: ASCII, lower case, ``_`` between words."""
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def dataset_tables(folder: Path) -> dict[str, Path]:
    """Table name -> file, for the files directly in ``folder`` (sorted, stable)."""
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix not in TABLE_EXTENSIONS or not path.is_file() or not path.stem:
            continue
        if path.stem not in by_stem or suffix == ".parquet":
            by_stem[path.stem] = path
    tables: dict[str, Path] = {}
    for stem in sorted(by_stem):
        name = slugify(stem)
        if name and name not in tables:  # two stems slugified alike: the first wins
            tables[name] = by_stem[stem]
    return tables


def create_dataset_views(db: duckdb.DuckDBPyConnection, folder: Path) -> list[str]:
    """One view per table file of ``folder``; must run before file access is locked
    down (the view is bound now; a query reads the file later, inside the allowed
    folder). Returns the names created.

    A file DuckDB cannot read gets no view (Oxy would refuse the whole database):
    the other tables stay usable, and a query naming the file by path still reports
    what is wrong with it."""
    created: list[str] = []
    for name, path in dataset_tables(folder).items():
        ident = '"' + name.replace('"', '""') + '"'
        literal = "'" + str(path).replace("'", "''") + "'"
        try:
            db.execute(f"CREATE VIEW {ident} AS SELECT * FROM {literal}")
        except duckdb.Error:
            continue
        created.append(name)
    return created
