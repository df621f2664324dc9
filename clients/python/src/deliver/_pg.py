"""psycopg errors as deliver's typed errors."""

from __future__ import annotations

import psycopg

from .errors import DeliverError, Unavailable, error_for


def translate(e: psycopg.Error) -> DeliverError:
    """The typed error of a psycopg error: by its SQLSTATE, with the
    server's message, detail and hint; a lost or closed connection (no
    SQLSTATE) is :class:`~deliver.Unavailable` with SQLSTATE 08006
    (connection_failure)."""
    diag = e.diag
    sqlstate = e.sqlstate
    message = diag.message_primary or str(e).strip() or type(e).__name__
    if sqlstate is None and isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
        return Unavailable(message, sqlstate="08006")
    return error_for(sqlstate, message, diag.message_detail, diag.message_hint)
