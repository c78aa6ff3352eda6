"""The portal's only SQL: predictions (jobs), their result rows, API keys, migrations.

SQLAlchemy Core over SQLite (the embedded default, WAL) or PostgreSQL (several VMs sharing
state), same code for both. Schema changes are numbered migrations recorded in
``schema_migrations`` and applied at start-up. Claiming work is a conditional UPDATE on a lease
token, and a chunk of result rows commits together with the job's progress only while the
lease is still held, so a job taken over after a crash loses and duplicates nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inference.portal.status import TRANSITIONS, Status

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # batch | online | capture
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("input_spec", sa.Text, nullable=False),  # JSON: inline records or a location
    sa.Column("output_location", sa.Text),
    sa.Column("rows_total", sa.Integer),
    sa.Column("rows_done", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("compare_of", sa.String(36), index=True),  # shadow run: the prediction it mirrors
    sa.Column("request_id", sa.String(128)),
    # A client-chosen request id (X-Request-Id, or "request_id" in the body) scoped by the call:
    # a retry finds the first prediction instead of making a second; the body's hash tells a retry
    # from another request reusing the id.
    sa.Column("idempotency_key", sa.String(160)),
    sa.Column("request_sha256", sa.String(64)),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)

sa.Index("ix_predictions_idempotency_key", predictions.c.idempotency_key, unique=True)

prediction_rows = sa.Table(
    "prediction_rows", metadata,
    sa.Column("prediction_id", sa.String(36), sa.ForeignKey("predictions.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    sa.Column("input_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("score", sa.Float),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("truth", sa.Text),
    sa.Column("latency_ms", sa.Float),
    sa.Column("explanation", sa.Text),  # JSON: the record's attributions, when asked ("explain")
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)



@dataclass(frozen=True)
class AddColumn:
    """A column added to a table after version 1: a database made from the tables as they are now
    already has it (``create`` wrote the whole table), an older one gets it by ALTER TABLE."""

    table: sa.Table
    column: str

    def apply(self, conn: sa.Connection) -> None:
        if self.column in {c["name"] for c in sa.inspect(conn).get_columns(self.table.name)}:
            return
        kind = self.table.c[self.column].type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {self.table.name} ADD COLUMN {self.column} {kind}"))


@dataclass(frozen=True)
class AddIndex:
    """An index made after version 1 (a database made from the tables as they are has it)."""

    index: sa.Index

    def apply(self, conn: sa.Connection) -> None:
        self.index.create(conn, checkfirst=True)


# Numbered migrations: version -> tables it creates, then the changes it makes.
MIGRATIONS: list[tuple[int, Sequence[sa.Table], Sequence[AddColumn | AddIndex]]] = [
    (1, (predictions, prediction_rows, api_keys), ()),
    (2, (), (AddColumn(prediction_rows, "explanation"),)),
    (3, (), (AddColumn(predictions, "idempotency_key"), AddColumn(predictions, "request_sha256"),
             AddIndex(next(i for i in predictions.indexes if i.name == "ix_predictions_idempotency_key")))),
]


class KeyTaken(Exception):
    """Another prediction already holds this idempotency key (a concurrent retry won the race)."""


@dataclass(frozen=True)
class Claim:
    prediction_id: str
    token: str


def _now() -> float:
    return time.time()


def engine_for(url: str, records: bool = False) -> Engine:
    """The engine for ``url``; ``records`` (PostgreSQL): the fast engine for online records."""
    if url.startswith("sqlite:///"):
        _sqlite_folder(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if records:
        # Sessions that do not wait for the WAL flush at commit, and no pre-ping: two round trips
        # less per recorded call. A connection dropped by a server restart is retried once instead.
        parsed = sa.engine.make_url(url)
        options = f"{parsed.query.get('options', '')} -c synchronous_commit=off".strip()
        return sa.create_engine(parsed.update_query_dict({"options": options}), pool_size=5, max_overflow=5)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file; a folder that cannot be made fails the first connection
    instead (the portal then retries, see health.py)."""
    path = url[len("sqlite:///"):]
    if path and path != ":memory:":
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


class Store:
    """Every read and write the portal makes."""

    def __init__(self, url: str, durable_records: bool = False) -> None:
        self.url = url
        self.engine = engine_for(url)
        self.dialect = self.engine.dialect.name
        # Online calls and captures: on PostgreSQL, unless MLAPP_DURABLE_RECORDS, their commits do
        # not wait for the WAL flush (most of their cost); a database-server crash can lose the last
        # fraction of a second of them, never corrupt them. Batch jobs and state changes always wait.
        self.record_engine = (engine_for(url, records=True)
                              if self.dialect == "postgresql" and not durable_records else self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self.record_engine is not self.engine:
            self.record_engine.dispose()

    # --- schema ---------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply missing migrations; safe when several processes start at once."""
        if self.dialect == "sqlite":
            _sqlite_folder(self.url)
        with self._migration_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(424242)"))
            schema_migrations.create(conn, checkfirst=True)
            done = {r[0] for r in conn.execute(sa.select(schema_migrations.c.version))}
            for version, tables, changes in MIGRATIONS:
                if version in done:
                    continue
                for table in tables:
                    table.create(conn, checkfirst=True)
                for change in changes:
                    change.apply(conn)
                conn.execute(schema_migrations.insert().values(version=version, applied_at=_now()))
        return max(v for v, _, _ in MIGRATIONS)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # PostgreSQL serialises on an advisory lock inside the transaction; SQLite's driver does
        # not put DDL in a transaction, so gunicorn workers booting together on a fresh file
        # would race on CREATE TABLE: they take a file lock beside the database instead.
        database = self.engine.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0)

    # --- predictions ------------------------------------------------------------------
    def insert_prediction(self, *, kind: str, status: str, model_name: str, model_version: str,
                          input_spec: dict[str, Any], output_location: str | None = None,
                          rows_total: int | None = None, compare_of: str | None = None,
                          request_id: str | None = None, prediction_id: str | None = None,
                          started: bool = False, idempotency: tuple[str, str] | None = None) -> str:
        """A new prediction; ``idempotency`` (key, request hash): KeyTaken if the key is held."""
        pid = prediction_id or str(uuid.uuid4())
        now = _now()
        key, digest = idempotency or (None, None)
        try:
            with self.engine.begin() as conn:
                conn.execute(predictions.insert().values(
                    id=pid, kind=kind, status=status, model_name=model_name, model_version=model_version,
                    input_spec=json.dumps(input_spec, default=str), output_location=output_location,
                    rows_total=rows_total, rows_done=0, attempts=0, compare_of=compare_of,
                    request_id=request_id, idempotency_key=key, request_sha256=digest, created_at=now,
                    started_at=now if started else None))
        except sa.exc.IntegrityError:
            if key is None or self.by_key(key) is None:
                raise
            raise KeyTaken(key) from None
        return pid

    def by_key(self, key: str) -> dict[str, Any] | None:
        """The prediction holding an idempotency key."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(predictions).where(predictions.c.idempotency_key == key)
                               ).mappings().first()
        return dict(row) if row else None

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            query = sa.select(predictions).where(predictions.c.id == prediction_id)
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def list_predictions(self, status: str | None = None, model_name: str | None = None,
                         kind: str | None = None, limit: int = 50, offset: int = 0
                         ) -> list[dict[str, Any]]:
        q = sa.select(predictions).order_by(predictions.c.created_at.desc()).limit(limit).offset(offset)
        if status:
            q = q.where(predictions.c.status == status)
        if model_name:
            q = q.where(predictions.c.model_name == model_name)
        if kind:
            q = q.where(predictions.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def transition(self, prediction_id: str, action: str, **values: Any) -> bool:
        """Atomically apply ``action`` of the transition table; False if the prediction was not in
        one of its source states."""
        move = TRANSITIONS[action]
        with self.engine.begin() as conn:
            res = conn.execute(predictions.update().where(
                predictions.c.id == prediction_id, predictions.c.status.in_(move.source_values)
            ).values(status=move.target.value, **values))
        return bool(res.rowcount)

    def claim_next(self, owner: str, lease_seconds: float, kinds: Sequence[str] = ("batch",)
                   ) -> Claim | None:
        """Take one queued job, or a running one whose lease ran out (its worker died)."""
        now = _now()
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(predictions.c.id, predictions.c.lease_owner, predictions.c.lease_until,
                          predictions.c.status)
                .where(predictions.c.kind.in_(list(kinds)))
                .where(sa.or_(predictions.c.status.in_(TRANSITIONS["start"].source_values),
                              sa.and_(predictions.c.status.in_(TRANSITIONS["take_over"].source_values),
                                      predictions.c.lease_until < now)))
                .order_by(predictions.c.created_at).limit(5)).all()
        for cid, old_owner, _until, status in candidates:
            token = f"{owner}:{uuid.uuid4().hex[:12]}"
            cond = [predictions.c.id == cid, predictions.c.status == status]
            cond.append(predictions.c.lease_owner == old_owner if old_owner is not None
                        else predictions.c.lease_owner.is_(None))
            if status == Status.RUNNING.value:
                # Taken over only if the lease is still expired now: a lease renewed since the read
                # above keeps its job.
                cond.append(predictions.c.lease_until < now)
            with self.engine.begin() as conn:
                res = conn.execute(predictions.update().where(*cond).values(
                    status=Status.RUNNING.value, lease_owner=token, lease_until=now + lease_seconds,
                    attempts=predictions.c.attempts + 1,
                    started_at=sa.func.coalesce(predictions.c.started_at, now)))
            if res.rowcount:
                return Claim(cid, token)
        return None

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        """Extend a held lease (the runner's heartbeat); False once it is lost."""
        with self.engine.begin() as conn:
            res = conn.execute(predictions.update().where(
                predictions.c.id == claim.prediction_id, predictions.c.lease_owner == claim.token,
                predictions.c.status == Status.RUNNING.value,
            ).values(lease_until=_now() + lease_seconds))
        return bool(res.rowcount)

    def commit_chunk(self, claim: Claim, rows: list[dict[str, Any]], rows_done: int,
                     lease_seconds: float) -> bool:
        """Insert a chunk of result rows and advance progress, only while holding the lease."""
        now = _now()
        with self.engine.begin() as conn:
            res = conn.execute(predictions.update().where(
                predictions.c.id == claim.prediction_id, predictions.c.lease_owner == claim.token,
                predictions.c.status == Status.RUNNING.value,
            ).values(rows_done=rows_done, lease_until=now + lease_seconds))
            if not res.rowcount:
                return False  # lease lost (taken over, or cancelled): write nothing
            if rows:
                conn.execute(prediction_rows.insert(), [{"prediction_id": claim.prediction_id, **r}
                                                        for r in rows])
        return True

    def finish(self, claim: Claim, action: str, error: str | None = None,
               rows_total: int | None = None) -> bool:
        """End a claimed job by ``action`` ('succeed' or 'fail'), only while holding its lease."""
        move = TRANSITIONS[action]
        values: dict[str, Any] = {"status": move.target.value, "finished_at": _now(), "lease_until": None,
                                  "error": error}
        if rows_total is not None:
            values["rows_total"] = rows_total
        with self.engine.begin() as conn:
            res = conn.execute(predictions.update().where(
                predictions.c.id == claim.prediction_id, predictions.c.lease_owner == claim.token,
                predictions.c.status.in_(move.source_values)).values(**values))
        return bool(res.rowcount)

    def insert_finished(self, *, kind: str, model_name: str, model_version: str, input_spec: dict[str, Any],
                        rows: list[dict[str, Any]], started_at: float, request_id: str | None = None,
                        compare_of: str | None = None, prediction_id: str | None = None,
                        error: str | None = None, idempotency: tuple[str, str] | None = None) -> str:
        """An online prediction (or a capture) that already ran: its record and its result rows in
        one transaction, one commit (the cost that matters on PostgreSQL). ``idempotency``: as in
        ``insert_prediction`` (KeyTaken: another worker recorded the same request first)."""
        pid = prediction_id or str(uuid.uuid4())
        args = (pid, kind, model_name, model_version, input_spec, rows, started_at, request_id,
                compare_of, error, idempotency)
        try:
            try:
                self._insert_finished(*args)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                self._insert_finished(*args)  # the pool has dropped the dead connection: once more
        except sa.exc.IntegrityError:
            if idempotency is None or self.by_key(idempotency[0]) is None:
                raise
            raise KeyTaken(idempotency[0]) from None
        return pid

    def _insert_finished(self, pid: str, kind: str, model_name: str, model_version: str,
                         input_spec: dict[str, Any], rows: list[dict[str, Any]], started_at: float,
                         request_id: str | None, compare_of: str | None, error: str | None,
                         idempotency: tuple[str, str] | None) -> None:
        key, digest = idempotency or (None, None)
        with self.record_engine.begin() as conn:
            conn.execute(predictions.insert().values(
                id=pid, kind=kind, status=(Status.FAILED if error else Status.SUCCEEDED).value,
                model_name=model_name,
                model_version=model_version, input_spec=json.dumps(input_spec, default=str),
                rows_total=len(rows) if not error else int(input_spec.get("inline_records", 0)),
                rows_done=len(rows), attempts=1, compare_of=compare_of, request_id=request_id, error=error,
                idempotency_key=key, request_sha256=digest, created_at=started_at, started_at=started_at,
                finished_at=_now()))
            if rows:
                conn.execute(prediction_rows.insert(), [{"prediction_id": pid, **r} for r in rows])

    def rows(self, prediction_id: str, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        q = (sa.select(prediction_rows).where(prediction_rows.c.prediction_id == prediction_id)
             .order_by(prediction_rows.c.row_index).offset(offset).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def row_count(self, prediction_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(prediction_rows).where(
                prediction_rows.c.prediction_id == prediction_id)).scalar() or 0)

    def reset_for_retry(self, prediction_id: str) -> bool:
        """The retry transition, dropping partial results so the rerun starts clean."""
        move = TRANSITIONS["retry"]
        with self.engine.begin() as conn:
            res = conn.execute(predictions.update().where(
                predictions.c.id == prediction_id, predictions.c.status.in_(move.source_values)
            ).values(status=move.target.value, rows_done=0, error=None, lease_owner=None, lease_until=None,
                     started_at=None, finished_at=None))
            if res.rowcount:
                conn.execute(prediction_rows.delete().where(prediction_rows.c.prediction_id == prediction_id))
        return bool(res.rowcount)

    def counts_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {s: int(n) for s, n in conn.execute(
                sa.select(predictions.c.status, sa.func.count()).group_by(predictions.c.status))}

    # --- API keys ----------------------------------------------------------------------
    def add_key(self, name: str, key_hash: str) -> str:
        kid = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(id=kid, name=name, key_hash=key_hash, created_at=_now()))
        return kid

    def revoke_key(self, key_id_or_name: str) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(api_keys.update().where(
                sa.or_(api_keys.c.id == key_id_or_name, api_keys.c.name == key_id_or_name),
                api_keys.c.revoked_at.is_(None)).values(revoked_at=_now()))
        return int(res.rowcount)

    def key_hashes(self) -> tuple[set[str], bool]:
        """Hashes of the active keys, and whether any key was ever created (revoked ones count)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys.c.key_hash, api_keys.c.revoked_at)).all()
        return {h for h, revoked in rows if revoked is None}, bool(rows)

    def keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(
                api_keys.c.id, api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at)).mappings()]
