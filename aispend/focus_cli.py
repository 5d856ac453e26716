"""`aispend focus summarize FILE...`: totals of a FOCUS export as CSV, for people.

    $ aispend focus summarize focus.csv --by ProviderName --by ServiceCategory
    ProviderName,ServiceCategory,BillingCurrency,EffectiveCost
    AWS,Compute,USD,13
    ...

Sums are exact (decimal arithmetic in DuckDB), grouped by the `--by` columns and by
BillingCurrency (never adding two currencies). `--by team|project|environment` reads
those from the `Tags` JSON through the given tag keys (untagged team: `untagged`).
The same reader feeds the billing exporter, so this is how to check its figures:
`--by BillingPeriodStart` gives each invoice's total, which the exporter's month to date
matches (a row charged before its billing period, such as a correction of an earlier
month, is booked on the first day of the billing period that invoices it).
"""

from __future__ import annotations

import argparse
import csv
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aispend.exporters.billing.settings import FocusTags

DEFAULT_BY = ["ProviderName"]


def add_tag_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--team-tag", default="team", metavar="KEY", help="tag key of the team")
    parser.add_argument(
        "--project-tag", default="project", metavar="KEY", help="tag key of the project"
    )
    parser.add_argument(
        "--environment-tag", default="environment", metavar="KEY", help="tag key of the environment"
    )


def tags_from_arguments(args: argparse.Namespace, prog: str) -> FocusTags | None:
    """The `add_tag_arguments` keys as FocusTags; None after printing why they are bad."""
    from pydantic import ValidationError

    from aispend.exporters.billing.settings import FocusTags
    from aispend.parsing import validation_message

    try:
        return FocusTags(
            team=args.team_tag, project=args.project_tag, environment=args.environment_tag
        )
    except ValidationError as exc:
        reason = validation_message(exc.errors()[0])
        print(f"{prog}: bad tag key: {reason}", file=sys.stderr)
        return None


def add_parser(sub: Any) -> None:
    focus = sub.add_parser("focus", help="work with FOCUS cost exports")
    focus_sub = focus.add_subparsers(dest="focus_command", metavar="ACTION", required=True)
    summarize = focus_sub.add_parser(
        "summarize", help="print cost totals of FOCUS files (CSV, CSV.gz, Parquet) as CSV"
    )
    summarize.add_argument("files", nargs="+", metavar="FILE", help="FOCUS files or globs")
    summarize.add_argument(
        "--by",
        action="extend",
        nargs="+",
        metavar="COLUMN",
        help="group by these columns (default ProviderName); team, project and environment"
        " come from Tags",
    )
    summarize.add_argument(
        "--cost",
        choices=["EffectiveCost", "BilledCost"],
        default="EffectiveCost",
        help="cost column to sum (default EffectiveCost)",
    )
    add_tag_arguments(summarize)
    summarize.set_defaults(func=run_summarize)


def run_summarize(args: argparse.Namespace) -> int:
    from aispend.exporters.billing.focus import FocusError, FocusReader

    tags = tags_from_arguments(args, "aispend focus summarize")
    if tags is None:
        return 2
    reader = FocusReader(args.files, args.cost, tags)
    try:
        header, rows = reader.summarize(args.by or DEFAULT_BY)
    except FocusError as exc:
        print(f"aispend focus summarize: {exc}", file=sys.stderr)
        return 1
    writer = csv.writer(sys.stdout, lineterminator="\n")
    try:
        writer.writerow(header)
        writer.writerows(rows)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
    return 0
