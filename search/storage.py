"""Where a study lives: an RDB storage (a SQLite file on one machine, PostgreSQL for many), opened with
heartbeats, and a lock that serialises the few steps two workers must not interleave (creating the
schema and the study, enqueueing the baselines, recovering a dead worker's trial).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from posenas.errors import StudyError

SQLITE = "sqlite:///"
SQLITE_BUSY_TIMEOUT_S = 120  # a worker waits this long for another's transaction (they take milliseconds)
CONNECT_TIMEOUT_S = 10  # PostgreSQL: a host that does not answer fails in this long (libpq has no limit of its own)


def connect_args(url: str) -> dict[str, Any]:
    """The driver's connection arguments for ``url``. PostgreSQL gets a connect timeout of
    ``CONNECT_TIMEOUT_S`` unless the URL sets its own (``?connect_timeout=30``, libpq's parameter)."""
    if sqlite_path(url) is not None:
        return {"isolation_level": None, "timeout": SQLITE_BUSY_TIMEOUT_S}
    if storage_url(url).startswith("postgresql") and "connect_timeout=" not in url:
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def storage_url(url: str) -> str:
    """``url`` with the PostgreSQL driver named: the README's ``postgresql://user@host/db`` means psycopg2
    (a dependency of posenas), whereas SQLAlchemy 2 would pick psycopg 3 for a bare ``postgresql://``."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def shown(url: str) -> str:
    """``url`` as messages show it: as the user wrote it (no driver added), its password masked."""
    for driver in ("postgresql+psycopg2://",):
        if url.startswith(driver):
            url = "postgresql://" + url[len(driver) :]
    return re.sub(r"^([a-z0-9+]+://[^:/@]+):[^@/]*@", r"\1:***@", url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (also in SQLite's URI form ``sqlite:///file:PATH?mode=ro&uri=true``),
    else None."""
    if not url.startswith(SQLITE):
        return None
    path = url[len(SQLITE) :]
    if path.startswith("file:"):
        path = path[len("file:") :].split("?", 1)[0]
    return Path(path)


def open_storage(url: str, heartbeat_interval: int = 30, grace_period: int = 120) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite file or PostgreSQL) with heartbeats: a trial whose worker stops beating for
    ``grace_period`` seconds is failed by the next worker and retried once (with the same parameters)."""
    url = storage_url(url)
    retry_kwargs: dict[str, Any]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
            retry_kwargs = {"heartbeat_stale_trial_callback": retry}
        else:
            retry_kwargs = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
    sqlite = sqlite_path(url) is not None
    engine_kwargs = {"connect_args": connect_args(url)}
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental; they are what we rely on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **retry_kwargs,
            )
    except Exception as exc:
        raise StudyError(f"storage {shown(url)}: cannot be opened ({_first_line(exc)})") from None
    if sqlite:
        _serialise_sqlite_transactions(storage)
    return storage


def _serialise_sqlite_transactions(storage: optuna.storages.RDBStorage) -> None:
    """Make every transaction on the SQLite file take the write lock when it begins (``BEGIN IMMEDIATE``).

    Python's sqlite3 driver begins a transaction only at the first write, so Optuna's read-then-claim of a
    queued trial (``SELECT ... FOR UPDATE`` on PostgreSQL, a plain ``SELECT`` on SQLite) lets two workers
    both read the trial as WAITING and both claim it: the two run the same network and the slower one's
    ``tell`` fails with "Cannot tell a COMPLETE trial" (measured: 2-5 of 150 queued trials claimed twice by
    two workers). With the lock taken at ``BEGIN``, the read and the claim are one atomic step. The driver
    is put in autocommit mode (``isolation_level=None``, set when the engine is made) so that the only
    ``BEGIN`` is this one; SQLAlchemy documents this recipe for pysqlite."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(storage.engine, "begin")
    def begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Database errors inside the block (a read-only file, a dropped connection) as one StudyError line."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        # Optuna wraps the driver's error in a generic message; the cause says what went wrong.
        raise StudyError(f"storage {shown(url)}: {_first_line(exc.__cause__ or exc)}") from None


@contextlib.contextmanager
def study_lock(url: str, study_name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``study_name`` in the storage at ``url`` while the block runs.

    SQLite: an ``flock`` on the database's folder (workers of one machine). PostgreSQL: a session
    advisory lock keyed by the study name (workers anywhere). Other URLs: no lock."""
    path = sqlite_path(url)
    if path is not None:
        # flock on the database's folder: it writes nothing (a read-only database stays untouched) and does
        # not meddle with SQLite's own fcntl locks on the file.
        try:
            handle = os.open(path.parent, os.O_RDONLY)
        except OSError as exc:
            raise StudyError(f"storage {shown(url)}: cannot lock the study ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # releases the lock
        return
    if not storage_url(url).startswith("postgresql"):
        yield
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"posenas:{study_name}".encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(
        storage_url(url), poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args(url)
    )
    try:
        try:
            connection = engine.connect()
        except Exception as exc:
            raise StudyError(f"storage {shown(url)}: cannot be opened ({_first_line(exc)})") from None
        with connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def storage_failure(exc: BaseException) -> StudyError | None:
    """A StudyError in one line when ``exc``, or what it was raised from, is the study's database failing
    (a full disk, a server gone: the driver's or SQLAlchemy's error, or optuna's StorageInternalError, after
    which optuna may trip over its own state); None for any other error."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    database = next(
        (
            e
            for e in reversed(chain)
            if type(e).__module__.split(".")[0] in ("sqlite3", "sqlalchemy", "psycopg2")
            or isinstance(e, optuna.exceptions.StorageInternalError)
        ),
        None,
    )
    if database is None:
        return None
    detail = _first_line(getattr(database, "orig", None) or database)  # type: ignore[arg-type]
    return StudyError(
        f"the study's storage failed ({detail}); the trials it recorded are kept: make room or "
        "bring the database back, and rerun the same command"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:160]
