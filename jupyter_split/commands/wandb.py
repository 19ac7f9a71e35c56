"""Verbs about W&B: `wandb` lists this experiment's runs on every site; `wandb sync` sends home runs."""
from __future__ import annotations

import argparse
import json

from ..tracking import sites as wandb_sites
from ..tracking.context import key_variable, server_jurisdiction, server_url
from ..core.split import get_split
from ..policy import ResidencyError
from . import Context, arg, number, verb


def _short(summary: dict, width: int = 48) -> str:
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(summary.items()))
    return text if len(text) <= width else text[: width - 3] + "..."


def _list(ctx: Context, args: argparse.Namespace) -> int:
    split = get_split()
    runs = wandb_sites.experiment_runs(split, args.site, args.limit, history=args.json)
    if args.json:
        ctx.print(json.dumps([r.row(split.config, full=True) for r in runs], indent=1, default=str))
        return 0
    if not runs:
        ctx.print(f"no W&B runs of experiment {split.config.experiment.name!r} yet: run a cell with --wandb, "
                  "or call wandb.init() in one")
        return 0
    rows = [r.row(split.config) for r in runs]
    ctx.print(f"experiment {split.config.experiment.name} (W&B group), {len(runs)} run(s)")
    ctx.table(["site", "W&B run", "job type", "mode", "state", "artifacts", "metrics", "split run"],
              [[r["site"], r["id"], r["job_type"], r["mode"], r["state"], len(r["artifacts"]), _short(r["metrics"]),
                r["split_run"]] for r in rows])
    return 0


def _sync(ctx: Context, args: argparse.Namespace) -> int:
    split = get_split()
    config = split.config
    target = config.site(args.to) if args.to else config.home
    runs = wandb_sites.experiment_runs(split, None, args.limit, history=False)
    plans = wandb_sites.plan_sync(config, runs, target)
    where = f"{server_url(target)} ({server_jurisdiction(target)})"
    if not plans:
        ctx.print(f"no offline runs at home to sync to {where}")
        return 0
    failed = 0
    for plan in plans:
        name = f"{plan.item.site}/{plan.item.run.id}"
        if not plan.finished:
            ctx.print(f"{name}: still running, or cut off before W&B wrote its exit: not synced")
            continue
        if plan.synced and not args.again:
            ctx.print(f"{name}: already synced to {where} (--again to send it again)")
            continue
        if args.dry_run:
            for artifact in plan.item.run.artifacts:
                if artifact["metadata"].get("labels"):
                    ctx.print(f"{name}: artifact {artifact['name']} carries labels {artifact['metadata']['labels']}: "
                              "the residency guard decides when it syncs")
        else:
            wandb_sites.check_artifacts(plan, config)
        for artifact, refusal in plan.refused.items():
            ctx.print(f"{name}: artifact kept back: {artifact}: {refusal}")
        if plan.metric_filter is not None:
            allowed = ", ".join(plan.metric_filter) or "none"
            ctx.print(f"{name}: the server is abroad: metrics limited to policy.metrics_abroad ({allowed}); "
                      "console output and files stay home")
        if args.dry_run:
            ctx.print(f"{name}: would sync to {where}")
            continue
        wandb_sites.stage(plan)
        try:
            wandb_sites.check_content(plan, config)
        except ResidencyError as exc:
            failed += 1
            ctx.print(f"{name}: not synced to {where}: {exc}")
            continue
        done = wandb_sites.run_sync(plan)
        if done.returncode != 0:
            failed += 1
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            ctx.print(f"{name}: wandb sync to {where} failed (status {done.returncode}):\n{tail}\n"
                      f"Check the server URL and the key (${key_variable(target.name)} or $WANDB_API_KEY), "
                      "then run `jupyter-split wandb sync` again; nothing was lost, the run stays here.")
            continue
        ctx.print(f"{name}: synced to {where}")
        for note in wandb_sites.complete_uses(plan):
            ctx.print(f"{name}: {note}")
    return 1 if failed else 0


@verb("wandb", "this experiment's W&B runs on every site (offline ones too); `wandb sync` sends home runs",
      arg("action", nargs="?", choices=["list", "sync"], default="list"),
      arg("--site", help="list only this site's runs"),
      arg("--limit", type=number(int, 1), default=200, help="look at this many recent runs (default 200)"),
      arg("--json", action="store_true", help="list as JSON, with config, summary, history and artifacts"),
      arg("--to", metavar="SITE", help="sync to this site's W&B server (default: the home site's)"),
      arg("--dry-run", action="store_true", help="say what sync would send and keep back; send nothing"),
      arg("--again", action="store_true", help="sync runs that were synced before"))
def wandb(ctx: Context, args: argparse.Namespace) -> int:
    """List this experiment's W&B runs (`list`), or send home the ones still offline (`sync`)."""
    return _sync(ctx, args) if args.action == "sync" else _list(ctx, args)
