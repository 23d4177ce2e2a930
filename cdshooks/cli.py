"""The ``cdshooks`` command: rules, token, evaluate, simulate, load-fixtures, feedback-report.

Every command prints a one-line error and exits non-zero on bad input; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
__all__ = ["main"]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_rules(args: argparse.Namespace) -> int:
    from .rules import all_rules

    rules = all_rules()
    if args.json:
        print(json.dumps([{"id": r.id, "title": r.title, "hooks": list(r.hooks), "indicator": r.indicator,
                           "source": r.source.cite()} for r in rules], indent=2))
        return 0
    width = max(len(r.id) for r in rules)
    for r in rules:
        print(f"{r.id:<{width}}  {r.indicator:<8}  {','.join(r.hooks):<38}  {r.source.cite()}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from .tokens import mint

    try:
        token = mint(args.key, args.audience, issuer=args.issuer, kid=args.kid, lifetime=args.lifetime,
                     tenant=args.tenant, jku=args.jku)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot mint a token: {exc}") from None
    print(token)
    return 0


def _cmd_feedback_report(args: argparse.Namespace) -> int:
    from .config import Settings
    from .store import Store

    settings = Settings.from_env()
    rows = Store(args.database or settings.db_url()).report()
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdshooks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rules", help="list the rules, their hooks, indicators and sources")
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

    try:
        from . import batch
    except ImportError:  # pragma: no cover - evaluate/simulate not built
        batch = None
    if batch is not None:
        batch.add_commands(sub, CommandError)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"cdshooks {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
