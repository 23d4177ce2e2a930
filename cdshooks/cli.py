"""The ``cdshooks`` command: rules, token, evaluate, simulate, load-fixtures, feedback-report, db.

Every command prints a one-line error and exits non-zero on bad input; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Sequence

from sqlalchemy.exc import SQLAlchemyError

from .cards.registry import HOOKS
from .config import ConfigError, Settings
from .population.inprocess import Service
from .population.report import cards_table, print_simulation
from .population.runner import default_jobs
from .population.simulation import simulate
from .service.hook_request import (
    InputError,
    NoDraftOrders,
    SeveralPatients,
    check_hook,
    hook_request,
    order_resources,
    parse_now,
    read_fhir,
)
from .tryit.fixtures import FIXTURES_DIR
from .tryit.loader import fixture_folders, transaction

__all__ = ["main"]

_HOOK_HELP = f"{' | '.join(HOOKS)} (default patient-view)"


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_rules(args: argparse.Namespace) -> int:
    from .cards.registry import all_rules

    rules = all_rules()
    if args.rule:
        chosen = next((r for r in rules if r.id == args.rule), None)
        if chosen is None:
            raise CommandError(f"unknown rule {args.rule!r}; known: {', '.join(r.id for r in rules)}")
        # the rule's clinical documentation: when it fires, stays silent, suggests; what changed and why
        print(f"{chosen.id} ({chosen.indicator}; {', '.join(chosen.hooks)}): {chosen.title}\n")
        print(chosen.doc.strip())
        return 0
    if args.json:
        print(json.dumps([{"id": r.id, "title": r.title, "hooks": list(r.hooks), "indicator": r.indicator,
                           "source": r.source.cite()} for r in rules], indent=2))
        return 0
    rows = [(r.id, r.indicator, ", ".join(r.hooks), f"{r.title}\nsource: {r.source.cite()}") for r in rules]
    print(_table(("rule", "indicator", "hooks", "title and source"), rows, _columns()))
    return 0


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], width: int | None) -> str:
    """Columns padded to their widest line; when the table is wider than ``width`` (the terminal),
    the widest columns after the first are narrowed and their cells wrap. ``width=None``: no wrapping."""
    import textwrap
    from itertools import zip_longest

    table: list[tuple[str, ...]] = [tuple(str(c) for c in header), tuple("-" * len(h) for h in header),
             *[tuple(str(c) for c in r) for r in rows]]
    widths = [max(len(line) for row in table for line in row[i].splitlines() or [""]) for i in range(len(header))]
    floor = [max(len(h), 8) for h in header]
    while width is not None and sum(widths) + 2 * (len(widths) - 1) > width:
        narrowable = [i for i in range(1, len(widths)) if widths[i] > floor[i]]
        if not narrowable:
            break
        widths[max(narrowable, key=lambda i: widths[i])] -= 1
    lines = []
    for row in table:
        cells = [[part for para in c.splitlines() or [""] for part in textwrap.wrap(para, w, break_on_hyphens=False)
                  or [""]] for c, w in zip(row, widths)]
        for parts in zip_longest(*cells, fillvalue=""):
            lines.append("  ".join(f"{p:<{w}}" for p, w in zip(parts, widths)).rstrip())
    return "\n".join(lines)


def _cmd_token(args: argparse.Namespace) -> int:
    from .trust.tokens import mint

    try:
        token = mint(args.key, args.audience, issuer=args.issuer, kid=args.kid, lifetime=args.lifetime,
                     tenant=args.tenant, jku=args.jku)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot mint a token: {exc}") from None
    print(token)
    return 0


def _cmd_feedback_report(args: argparse.Namespace) -> int:
    from .store import Store, StoreUnavailable

    settings = Settings.from_env()
    store = Store(args.database or settings.db_url(), **(settings.store_options() | {"queue_size": 0}))
    try:
        store.init()
        rows = store.report()
    except (StoreUnavailable, SQLAlchemyError) as exc:
        raise CommandError(f"the database cannot be read: {type(exc).__name__}") from None
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no cards issued and no feedback stored yet")
        return 0
    print(f"{'rule':<26} {'issued':>7} {'accepted':>9} {'overridden':>11}  top override reasons")
    for r in rows:
        reasons = ", ".join(f"{code} ({n})" for code, n in r["topOverrideReasons"]) or "-"
        print(f"{r['rule']:<26} {r['issued']:>7} {r['accepted']:>9} {r['overridden']:>11}  {reasons}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from .store import Store, migrate

    settings = Settings.from_env()
    store = Store(args.database or settings.db_url(), queue_size=0, connect_timeout=settings.db_connect_timeout)
    try:
        if args.action == "upgrade":
            before, after = migrate.upgrade(store.engine)
            print(f"schema upgraded from {before or 'empty'} to {after}" if before != after
                  else f"schema already at {after}")
        else:
            have, want = migrate.current(store.engine), migrate.head()
            print(f"schema at {have or 'none'}; this version needs {want}")
            return 0 if have == want else 1
    except SQLAlchemyError as exc:
        raise CommandError(f"the database cannot be reached or migrated: {type(exc).__name__}") from None
    finally:
        store.close()
    return 0


def _load_orders(path: str | None) -> list[dict] | None:
    if path is None:
        return None
    return order_resources(read_fhir(path), str(path))


def _cmd_evaluate(error: type[Exception], args: argparse.Namespace) -> int:
    from .service.hook_request import describe_reading, read_inputs, reading

    what = args.paths[0] if len(args.paths) == 1 else f"the {len(args.paths)} inputs"
    try:
        check_hook(args.hook)
        now = parse_now(args.now) if args.now else datetime.now(timezone.utc)
        inputs = read_inputs(args.paths)
        lone = inputs.lone_bulk_file()
        if lone is not None:
            raise InputError(f"{lone} is one file of a Bulk export (one type per file; its folder holds other "
                             f".ndjson files): give the folder, or all its .ndjson files")
        orders = _load_orders(args.orders)
        with Service(now) as service:
            try:
                request = hook_request(inputs.items, args.hook, service.templates(args.hook), now=now,
                                       patient_id=args.patient, orders=orders, what=what)
            except SeveralPatients as exc:
                raise InputError(f"{exc}; name one with --patient ID") from None
            except NoDraftOrders as exc:
                raise InputError(f"{exc}; give them with --orders FILE") from None
            answer = service.call(request)
    except InputError as exc:
        raise error(str(exc)) from None
    print(describe_reading(reading(inputs.items, request, inputs.unreadable)), file=sys.stderr)
    for rule_id in answer.failed_rules:
        print(f"cdshooks evaluate: warning: rule {rule_id} raised an error and gave no card", file=sys.stderr)
    if answer.status != 200:
        raise error(answer.problem())
    if args.json:
        print(json.dumps(answer.body, indent=2, ensure_ascii=False))
        return 0
    cards = answer.cards
    print(f"Patient/{request['context']['patientId']}  {args.hook}  as of {now.strftime('%Y-%m-%dT%H:%M:%SZ')}: "
          f"{len(cards)} card{'s' if len(cards) != 1 else ''}")
    if cards:
        print(cards_table(cards, _columns() or shutil.get_terminal_size((120, 24)).columns))
    return 0


def _columns() -> int | None:
    """The terminal's width (``COLUMNS`` when set); None when the output is not a terminal."""
    import os

    if not os.environ.get("COLUMNS", "").isdigit() and not sys.stdout.isatty():
        return None
    return max(60, shutil.get_terminal_size((120, 24)).columns)


def _cmd_simulate(error: type[Exception], args: argparse.Namespace) -> int:
    import tempfile

    def warn(message: str) -> None:
        print(f"cdshooks simulate: {message}", file=sys.stderr)

    paths, work, temporary = list(args.paths), args.work, None
    try:
        check_hook(args.hook)
        if args.source and paths:
            raise InputError("give PATHs or --from URL, not both")
        if not args.source and not paths:
            raise InputError("give the FHIR data: PATH..., or --from FHIR_BASE_URL to export it first")
        now = parse_now(args.now) if args.now else datetime.now(timezone.utc)
        orders = _load_orders(args.orders)
        if args.replay and args.hook == "patient-view":
            raise InputError("--replay replays historical orders: use it with --hook order-select or order-sign")
        if args.replay and orders is not None:
            raise InputError("--replay and --orders do not go together")
        if args.source:
            if work is None:
                work = str(Path(args.out) / "work") if args.out else tempfile.mkdtemp(prefix="cdshooks-simulate-")
                temporary = None if args.out else work
            paths = [_export_for_simulation(args, Path(work) / "export", [args.hook])]
        if args.engine == "spark":
            from .population.spark_runner import simulate_spark

            report, failed = simulate_spark(paths, args.hook, now, orders, out=args.out, master=args.master,
                                            replay=args.replay, partitions=args.partitions, fmt=args.format)
        else:
            report, failed = simulate(paths, args.hook, now, orders, warn, jobs=args.jobs or default_jobs(),
                                      out=args.out, work=work, replay=args.replay, keep_work=args.keep_work,
                                      fmt=args.format)
    except InputError as exc:
        raise error(str(exc)) from None
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_simulation(report)
    return 1 if failed else 0


def _auth(args: argparse.Namespace, base: str):
    """SMART Backend Services credentials from the options (the token endpoint discovered when not given)."""
    from .population.bulk_client import Auth, token_endpoint

    if not (args.client_id or args.key or args.token_url):
        return None
    if not (args.client_id and args.key):
        raise InputError("SMART Backend Services needs --client-id and --key (and --token-url, or the server's "
                         ".well-known/smart-configuration)")
    token_url = args.token_url or token_endpoint(base)
    return Auth(token_url, args.client_id, args.key, kid=args.kid, scope=args.scope)


def _run_export(args: argparse.Namespace, base: str, out: str | Path, hooks: list[str], label: str) -> list:
    from .population.bulk_client import export, narrowed
    from .population.evaluation import Evaluator

    def say(message: str) -> None:
        print(f"cdshooks {label}: {message}", file=sys.stderr, flush=True)

    auth = _auth(args, base)
    level = "group" if args.group else ("patient" if args.patients else "system")
    types: list[str] | None = None
    filters: list[str] | None = None
    if not args.all_types:
        for hook in hooks:
            check_hook(hook)
        engine = Evaluator("patient-view", datetime.now(timezone.utc)).engine
        types, filters = narrowed(engine, hooks)
        if args.no_type_filter:
            filters = None
    return export(base, out, level=level, group=args.group, types=types, type_filters=filters, since=args.since,
                  auth=auth, max_wait=args.max_wait, progress=say)


def _export_for_simulation(args: argparse.Namespace, folder: Path, hooks: list[str]) -> str:
    """``simulate --from URL``: the export into the work folder (one already finished there is used again:
    its manifest.json is written last)."""
    if (folder / "manifest.json").is_file():
        print(f"cdshooks simulate: using the export already in {folder}", file=sys.stderr)
    else:
        _run_export(args, args.source, folder, hooks, "simulate")
    return str(folder)


def _cmd_export(error: type[Exception], args: argparse.Namespace) -> int:
    try:
        files = _run_export(args, args.fhir_base_url, args.out, args.hook or list(HOOKS), "export")
    except InputError as exc:
        raise error(str(exc)) from None
    print(f"exported {len(files)} file(s) into {args.out}; run: cdshooks simulate {args.out}")
    return 0


def _cmd_load_fixtures(error: type[Exception], args: argparse.Namespace) -> int:
    import requests

    if args.dir:
        folders = [Path(d).resolve() for d in args.dir]
    else:
        try:
            folders = fixture_folders(Settings.from_env().fixtures_dir or None)
        except ConfigError as exc:
            raise error(str(exc)) from None
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing or not folders:
        raise error(f"no fixture folder: {', '.join(missing) or FIXTURES_DIR} (set CDSHOOKS_FIXTURES_DIR or --dir)")
    try:
        bundle, dangling = transaction(folders, datetime.now(timezone.utc))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read the fixtures: {exc}") from None
    if not bundle["entry"]:
        raise error(f"no FHIR resources in {', '.join(map(str, folders))}")
    for ref in dangling:
        print(f"cdshooks load-fixtures: warning: {ref} is referenced but not in the fixtures", file=sys.stderr)
    base = args.fhir_base_url.rstrip("/")
    if args.wait:
        _wait_for(base, args.wait, error)
    try:
        resp = requests.post(base, data=json.dumps(bundle), timeout=args.timeout,
                             headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    except requests.RequestException as exc:
        raise error(f"cannot reach {base}: {type(exc).__name__}") from None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not 200 <= resp.status_code < 300:
        issues = body.get("issue") if isinstance(body, dict) else None
        detail = (issues[0].get("diagnostics") if issues and isinstance(issues[0], dict) else None) or resp.reason
        raise error(f"{base} answered {resp.status_code}: {detail}")
    statuses = Counter(str(((e or {}).get("response") or {}).get("status", "?")).split(" ")[0]
                       for e in (body.get("entry") or [] if isinstance(body, dict) else []))
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    print(f"loaded {len(bundle['entry'])} resources ({kinds.get('Patient', 0)} patients) into {base}"
          + (f": {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}" if statuses else ""))
    return 0


def _wait_for(base: str, seconds: float, error: type[Exception]) -> None:
    """Retry ``GET base/metadata`` until the server answers 200 (a server still starting refuses or 503s)."""
    import time

    import requests

    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            resp = requests.get(f"{base}/metadata", timeout=5, headers={"Accept": "application/fhir+json"})
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise error(f"{base} did not answer within {seconds:g} s ({last})")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _add_population_commands(subparsers: argparse._SubParsersAction, command_error: type[Exception]) -> None:
    """Add ``evaluate``, ``simulate`` and ``load-fixtures``; their user errors raise ``command_error``."""
    p = subparsers.add_parser("evaluate", help="run one patient's hook call and print the cards")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="FHIR data with the Patient: Bundles, resources, Bulk NDJSON files, or folders of them "
                        "(a Bulk export: its folder, or all its .ndjson files)")
    p.add_argument("--hook", default="patient-view", help=_HOOK_HELP)
    p.add_argument("--patient", metavar="ID", help="the patient, when the data holds several")
    p.add_argument("--now", metavar="TIME", help="evaluate as of this ISO 8601 date or date-time (default: now)")
    p.add_argument("--orders", metavar="FILE", help="draft orders (Bundle or resource) instead of the data's own")
    p.add_argument("--json", action="store_true", help="print the service's response JSON")
    p.set_defaults(func=partial(_cmd_evaluate, command_error))

    p = subparsers.add_parser("simulate", help="silent mode: evaluate every patient of FHIR files, count cards")
    p.add_argument("paths", nargs="*", metavar="PATH", help="Bundles, NDJSON files, or folders of them")
    p.add_argument("--from", dest="source", metavar="FHIR_BASE_URL",
                   help="first run a Bulk Data $export from this server into the work folder (see export's "
                        "options below), then simulate it")
    p.add_argument("--hook", default="patient-view", help=_HOOK_HELP)
    p.add_argument("--now", metavar="TIME", help="evaluate as of this ISO 8601 date or date-time (default: now)")
    p.add_argument("--orders", metavar="FILE", help="draft orders given to every patient (order hooks)")
    p.add_argument("--replay", action="store_true",
                   help="order hooks: replay each historical MedicationRequest / ServiceRequest as a draft order "
                        "at its authoredOn, against the record as it stood then")
    p.add_argument("--out", metavar="DIR", help="write cards.ndjson, summary.json and report.html here")
    p.add_argument("--format", choices=("ndjson", "parquet"), default="ndjson",
                   help="the cards as NDJSON (default) or Parquet (pip install 'cdshooks[parquet]' for the local "
                        "engine; Spark writes Parquet itself)")
    p.add_argument("--jobs", type=int, default=0, metavar="N", help="processes (default: every core)")
    p.add_argument("--work", metavar="DIR",
                   help="checkpoint folder: a stopped run started again with it resumes (default: DIR/work "
                        "with --out, else a temporary folder)")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder after a finished run")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local processes (default) or Apache Spark (pip install 'cdshooks[spark]')")
    p.add_argument("--master", metavar="URL", help="Spark master (default: local[*], or spark-submit's)")
    p.add_argument("--partitions", type=int, default=0, metavar="N",
                   help="Spark: partitions of the shuffle by patient (default: twice the default parallelism)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    _add_export_options(p, "Bulk Data export (with --from)")
    p.set_defaults(func=partial(_cmd_simulate, command_error))

    p = subparsers.add_parser("export", help="FHIR Bulk Data $export into NDJSON files (SMART Backend Services)")
    p.add_argument("fhir_base_url", metavar="FHIR_BASE_URL")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the NDJSON files and manifest.json")
    p.add_argument("--hook", action="append", metavar="HOOK",
                   help="narrow _type/_typeFilter to what this hook's rules read (repeatable; default: all hooks)")
    _add_export_options(p)
    p.set_defaults(func=partial(_cmd_export, command_error))

    p = subparsers.add_parser("load-fixtures", help="PUT the fixture resources to a FHIR server (one transaction)")
    p.add_argument("fhir_base_url", metavar="FHIR_BASE_URL")
    p.add_argument("--dir", action="append", metavar="DIR",
                   help="fixture folder (repeatable; default: fhir_fixtures/ and CDSHOOKS_FIXTURES_DIR)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to this long for the server to answer GET /metadata (a starting server)")
    p.set_defaults(func=partial(_cmd_load_fixtures, command_error))


def _add_export_options(p: argparse.ArgumentParser, title: str = "Bulk Data export") -> None:
    """The $export options, shared by ``export`` and ``simulate --from``."""
    group = p.add_argument_group(title)
    scope = group.add_mutually_exclusive_group()
    scope.add_argument("--group", metavar="ID", help="export one Group's patients (Group/ID/$export)")
    scope.add_argument("--patients", action="store_true", help="export every patient (Patient/$export)")
    group.add_argument("--all-types", action="store_true", help="no _type or _typeFilter: everything the server has")
    group.add_argument("--no-type-filter", action="store_true", help="send _type but no _typeFilter")
    group.add_argument("--since", metavar="INSTANT", help="_since: only resources changed since then")
    group.add_argument("--client-id", help="SMART Backend Services client id")
    group.add_argument("--key", metavar="FILE", help="the client's private key (JWK, JWK Set or PEM; RSA or P-384)")
    group.add_argument("--kid", help="key id (default: the JWK's kid or its thumbprint)")
    group.add_argument("--token-url", metavar="URL",
                       help="the authorization server's token endpoint (default: the token_endpoint of the "
                            "server's .well-known/smart-configuration)")
    group.add_argument("--scope", help="scope requested (default: system/<Type>.read for each exported type)")
    group.add_argument("--max-wait", type=float, default=24 * 3600, metavar="SECONDS",
                       help="give up when the export has not finished after this long (default 24 h)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdshooks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cdshooks {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rules", help="list the rules, their hooks, indicators, titles and sources; "
                                      "with a rule id, print that rule's clinical documentation")
    p.add_argument("rule", nargs="?", help="a rule id: print its documentation (when it fires, stays silent, "
                                           "suggests, what changed and why)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_rules)

    p = sub.add_parser("token", help="mint a signed client JWT for calling a secured service")
    p.add_argument("--key", required=True, help="private key: a JWK (JSON, with 'd') or a PEM file")
    p.add_argument("--audience", "--aud", required=True, help="the exact URL you will call")
    p.add_argument("--issuer", "--iss", help="iss claim (default: the sandbox's for the sandbox key)")
    p.add_argument("--kid", help="key id header (default: the JWK's kid)")
    p.add_argument("--lifetime", type=int, default=300, help="seconds until exp (default 300)")
    p.add_argument("--tenant", help="tenant claim")
    p.add_argument("--jku", help="jku header (default: the sandbox's, with its key pair)")
    p.set_defaults(func=_cmd_token)

    p = sub.add_parser("feedback-report", help="per rule: cards issued, accepted, overridden, override reasons")
    p.add_argument("--database", help="SQLAlchemy URL (default: CDSHOOKS_DATABASE_URL or the instance SQLite file)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_feedback_report)

    p = sub.add_parser("db", help="the database schema: upgrade to this version's migrations, or show its revision")
    p.add_argument("action", choices=["upgrade", "current"],
                   help="upgrade: run the migrations (safe while the service runs); current: exit 1 unless at head")
    p.add_argument("--database", help="SQLAlchemy URL (default: CDSHOOKS_DATABASE_URL or the instance SQLite file)")
    p.set_defaults(func=_cmd_db)

    _add_population_commands(sub, CommandError)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except CommandError as exc:
        print(f"cdshooks {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`cdshooks rules | head`): stop quietly, and keep Python's flush at exit quiet too
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cdshooks")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
