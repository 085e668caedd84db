"""The lines ``make dev`` prints once the stack is ready: what runs where, and three commands to try."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zus_local.stack import LocalStack


def banner(stack: LocalStack, elapsed: float) -> str:
    """What the stack runs, where, and three commands to try."""
    assert stack.model is not None
    assert stack.api is not None
    model, options = stack.model, stack.options
    api = stack.api.url
    aws = (
        f"{stack.aws.endpoint}  (moto{', started here' if stack.moto else ''})"
        if stack.aws.endpoint
        else f"the real AWS account {stack.aws.account_id} ({options.region})"
    )
    zus = (
        f"{stack.zus_api_base}  (emulator, admin client {options.admin_client_id})"
        if stack.emulator
        else f"{stack.zus_api_base or 'the template API URL'} (API), "
        f"{stack.zus_auth_base or 'the template auth URL'} (auth)"
    )
    lines = [
        f"zus-m2m local stack ({options.template.name}: {len(model.functions)} functions, "
        f"{len(model.routes)} routes, {len(model.schedules)} schedules)",
        f"  local API     {api}",
        f"  Zus           {zus}",
        f"  AWS           {aws}",
        f"  table         {options.table}"
        + (f"; bootstrap admin secret {stack.aws.admin_secret_name}" if stack.aws.admin_secret_name else ""),
    ]
    if stack.scheduler is not None:
        every = ", ".join(f"{s.name} every {_seconds(stack.scheduler.interval(s))}" for s in stack.scheduler.schedules)
        scale = f" (--schedule-scale {options.schedule_scale:g})" if options.schedule_scale != 1 else ""
        lines.append(f"  schedules     {every}{scale}")
    elif model.schedules:
        lines.append("  schedules     off (--schedule-scale 0)")
    if stack.player is not None:
        lines.append("  rotations     played here: Secrets Manager's four steps through the rotation function")
    if model.ignored_events:
        lines.append(f"  not played    {', '.join(model.ignored_events)}")
    lines.extend(f"  note          {note}" for note in stack.aws.notes)
    lines += [
        "",
        "Try:",
        f"  curl -s -X POST {api}/app-clients -H 'content-type: application/json' "
        """-d '{"name":"billing-service"}'""",
        f"  curl -s {api}/app-clients/billing-service/token",
        f"  curl -s -X POST {api}/app-clients/billing-service/rotations",
        "",
        f"ready in {elapsed:.1f}s - Ctrl-C stops everything",
    ]
    return "\n".join(lines)


def _seconds(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"
