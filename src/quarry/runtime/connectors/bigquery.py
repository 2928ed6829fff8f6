"""BigQuery through google-cloud-bigquery (its REST API), answering Arrow.

Authenticated with the service-account key of ``config.yml`` (``key_path`` or
``key_path_var``), read by the registry and handed over as data, so the child
process of tenant SQL never reads a file. Values are bound as positional query
parameters (``?``), typed from the Python value. ``dry_run_limit`` (Oxy's cap in
bytes) runs a dry-run job first and refuses a statement that would scan more.
``dataset`` is the default dataset for unqualified table names. Each statement is a
query job with an id of Quarry's (jobs.insert), so ``interrupt()`` cancels it on
BigQuery's side (jobs.cancel) instead of only dropping the HTTP request.

The guard checks the API host and the key's ``token_uri`` host before any request
(the key file is the workspace's: its token URL is not trusted blindly).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.oauth2 import service_account

from quarry.runtime.connectors.base import BoundSql, ConnectorError
from quarry.runtime.connectors.support import WarehouseConnector

SCOPES = ("https://www.googleapis.com/auth/bigquery",)
TIMEOUT_SECONDS = 600.0


def parameter_type(value: Any) -> str:
    """The BigQuery type a bound Python value is declared as."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def query_parameters(values: list[Any]) -> list[bigquery.ScalarQueryParameter]:
    out = []
    for value in values:
        kind = parameter_type(value)
        bound = str(value) if kind == "STRING" and value is not None else value
        out.append(bigquery.ScalarQueryParameter(None, kind, bound))
    return out


class BigQueryConnector(WarehouseConnector):
    """One ``type: bigquery`` database of a run."""

    dialect = "bigquery"

    def _setup(self) -> None:
        self._client: bigquery.Client | None = None
        self._running: dict[str, str | None] = {}  # job id -> its location, once known

    def _open(self) -> bigquery.Client:
        with self._lock:
            if self._client is not None:
                return self._client
            key: dict[str, Any] = dict(self._settings["key"])
            endpoint = str(self._settings["api_endpoint"])
            self._check_url(endpoint, "api endpoint")
            self._check_url(str(key["token_uri"]), "key's token_uri")
            try:
                credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    key, scopes=SCOPES
                )
            except (ValueError, KeyError) as exc:
                raise ConnectorError(
                    f"database {self.name!r}: the service-account key is not usable: "
                    f"{self._redact(str(exc))}",
                    database=self.name,
                    field="key_path",
                ) from None
            self._client = bigquery.Client(
                project=str(key["project_id"]),
                credentials=credentials,
                client_options=ClientOptions(api_endpoint=endpoint),
            )
            return self._client

    def _config(self, params: list[Any], *, dry_run: bool = False) -> bigquery.QueryJobConfig:
        config = bigquery.QueryJobConfig(
            query_parameters=query_parameters(params), dry_run=dry_run, use_query_cache=not dry_run
        )
        dataset = self._settings.get("dataset")
        if dataset:
            project = self._settings["key"]["project_id"]
            config.default_dataset = dataset if "." in dataset else f"{project}.{dataset}"
        return config

    def query(self, sql: BoundSql) -> pa.Table:
        text, params = sql.to_driver(lambda _i: "?")
        client = self._open()
        job_id = ""
        try:
            limit = self._settings.get("dry_run_limit")
            if sql.read_only is not None:
                # BigQuery has no read-only session: its own dry run says what the
                # statement is, and anything but a query is refused unrun.
                planned = client.query(text, job_config=self._config(params, dry_run=True))
                if planned.statement_type != "SELECT":
                    raise ConnectorError(
                        f"database {self.name!r}: refused: BigQuery plans this statement "
                        f"as {planned.statement_type}, and only queries run read-only",
                        database=self.name,
                    )
                if sql.plan_only:
                    return pa.table({})
            if limit is not None:
                planned = client.query(text, job_config=self._config(params, dry_run=True))
                scanned = int(planned.total_bytes_processed or 0)
                if scanned > int(limit):
                    raise ConnectorError(
                        f"database {self.name!r}: the query would process {scanned} bytes, "
                        f"over the dry_run_limit of {limit}",
                        database=self.name,
                        field="dry_run_limit",
                    )
            # A job id of our own, known before the job starts, so interrupt() can
            # cancel it on BigQuery's side (jobs.query would name it only when done).
            job_id = f"quarry_{uuid.uuid4().hex}"
            with self._lock:
                self._running[job_id] = None
            job = client.query(text, job_config=self._config(params), job_id=job_id, job_retry=None)
            with self._lock:
                if job_id in self._running:
                    self._running[job_id] = job.location
            rows = job.result(timeout=TIMEOUT_SECONDS)
            table: pa.Table = rows.to_arrow(create_bqstorage_client=False)
            return table
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
            raise ConnectorError(self._message(exc), database=self.name) from exc
        except concurrent.futures.TimeoutError:
            raise ConnectorError(
                f"database {self.name!r}: the query ran longer than {TIMEOUT_SECONDS:g}s",
                database=self.name,
            ) from None
        finally:
            with self._lock:
                self._running.pop(job_id, None)

    def _message(self, exc: BaseException) -> str:
        text = str(exc)
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            # The server's own message, without the request URL the client prefixes.
            first = exc.errors[0] if exc.errors else None
            found = first.get("message") if isinstance(first, dict) else None
            text = str(found or exc.message or exc)
        return self._redact(text.strip())

    def interrupt(self) -> None:
        """Cancel each running job on BigQuery's side (jobs.cancel), then close the
        HTTP session, so a request still waiting fails and the statement ends."""
        with self._lock:
            client = self._client
            running = dict(self._running)
        if client is None:
            return
        for job_id, location in running.items():
            # An error: the job ended already or cannot be reached; nothing to stop.
            with contextlib.suppress(Exception):
                client.cancel_job(job_id, location=location, timeout=10)
        with contextlib.suppress(Exception):
            client.close()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
