"""`mlapp`: administer the portal's store from a shell (API keys, schema, pending jobs).

    mlapp keys create NAME      prints a new key once; only its hash is stored
    mlapp keys list             id, name, created, revoked
    mlapp keys revoke ID|NAME
    mlapp migrate               apply schema migrations (serve does this at start-up too)
    mlapp jobs [--status S]     recent predictions

The database is the one `serve` uses: MLAPP_DATABASE_URL, or SQLite under MLAPP_DATA_DIR;
``--database-url`` overrides both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from container.settings import Settings, SettingsError
from inference.portal.auth import hash_key, new_key
from inference.portal.status import Status
from inference.portal.store import Store


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlapp", description="Administer the MLapp portal store.")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: what serve would use)")
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    key_sub = keys.add_subparsers(dest="action", required=True)
    create = key_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("name", help="who or what the key is for")
    key_sub.add_parser("list", help="list keys (never their values)")
    revoke = key_sub.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key", help="key id or name")
    sub.add_parser("migrate", help="apply schema migrations")
    job_list = sub.add_parser("jobs", help="list recent predictions")
    job_list.add_argument("--status", choices=list(Status.__members__))
    job_list.add_argument("--limit", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        url = args.database_url or Settings.from_env().resolved_database_url
    except SettingsError as exc:
        print(f"mlapp: {exc}", file=sys.stderr)
        return 2
    store: Store | None = None
    try:
        store = Store(url)
        store.migrate()
        return _dispatch(store, args)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"mlapp: the store at {url} failed: {first}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()


def _dispatch(store: Store, args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.command == "migrate":
        print(f"schema version {store.schema_version()}", file=out)
        return 0
    if args.command == "jobs":
        rows = store.list_predictions(status=args.status, limit=args.limit)
        if args.json:
            print(json.dumps(rows, default=str, indent=1), file=out)
        for row in [] if args.json else rows:
            done = f"{row['rows_done']}/{row['rows_total'] if row['rows_total'] is not None else '?'}"
            print(f"{row['id']}  {row['status']:<9} {row['kind']:<7} {row['model_name']}:"
                  f"{row['model_version']}  rows {done}  created {_when(row['created_at'])}", file=out)
        return 0
    if args.action == "create":
        key = new_key()
        key_id = store.add_key(args.name, hash_key(key))
        if args.json:
            print(json.dumps({"id": key_id, "name": args.name, "key": key}), file=out)
        else:
            print(f"created key {key_id} for {args.name!r}; store it now, it is not shown again:", file=out)
            print(key, file=out)
        return 0
    if args.action == "list":
        keys = store.keys()
        if args.json:
            print(json.dumps(keys, default=str), file=out)
        for key_row in [] if args.json else keys:
            print(f"{key_row['id']}  {key_row['name']:<24} created {_when(key_row['created_at'])}  "
                  f"revoked {_when(key_row['revoked_at'])}", file=out)
        return 0
    revoked = store.revoke_key(args.key)
    if not revoked:
        print(f"mlapp: no active key with id or name {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked {revoked} key(s)", file=out)
    return 0


def main() -> None:
    sys.exit(run())
