"""The lines ``make dev`` prints once the stack is ready: what runs where, who may sign, and the commands
to try (signed with curl's own SigV4; the keys are read from the keys file, never printed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zus_local.local_principals import keys_file

if TYPE_CHECKING:
    from zus_local.stack import LocalStack


def banner(stack: LocalStack, elapsed: float) -> str:
    """What the stack runs, where, who may sign, and the commands to try."""
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
        f"{len(model.routes)} routes, {len(model.schedules)} schedules, {len(model.subscriptions)} queue"
        f"{'s' if len(model.subscriptions) != 1 else ''})",
        f"  local API     {api}",
        f"  Zus           {zus}",
        f"  AWS           {aws}",
        f"  table         {options.table}"
        + (f"; bootstrap admin secret {stack.aws.admin_secret_name}" if stack.aws.admin_secret_name else ""),
    ]
    if stack.runtime is not None:
        runtime = stack.runtime
        lines.append(
            f"  functions     one process per execution environment (awslambdaric), up to {runtime.concurrency} "
            f"per function, {'frozen between invocations' if runtime.freeze else 'NOT frozen (--no-freeze)'}, "
            + (f"ended after {_seconds(runtime.idle_seconds)} idle:" if runtime.idle_seconds else "never ended:")
        )
        lines.extend(
            f"                {function:<24} pid {pid}, init {init_ms:.0f} ms"
            for function, pid, init_ms in runtime.idle_environments()
        )
    if stack.scheduler is not None:
        every = ", ".join(f"{s.name} every {_seconds(stack.scheduler.interval(s))}" for s in stack.scheduler.schedules)
        scale = f" (--schedule-scale {options.schedule_scale:g})" if options.schedule_scale != 1 else ""
        lines.append(f"  schedules     {every}{scale}")
    elif model.schedules:
        lines.append("  schedules     off (--schedule-scale 0)")
    for poller in stack.pollers:
        queue, subscription = poller.queue, poller.subscription
        dead_letters = (
            f"; dead letters to {model.queues[queue.dead_letter_queue].name} after {queue.max_receive_count} receives"
            if queue.dead_letter_queue
            else ""
        )
        lines.append(
            f"  queue         {queue.name} -> {subscription.function} (batches of {subscription.batch_size}, "
            f"visibility {_seconds(queue.visibility_timeout / (options.schedule_scale or 1))}{dead_letters})"
        )
    if stack.player is not None:
        lines.append("  rotations     played here: Secrets Manager's four steps through the rotation function")
    if model.ignored_events:
        lines.append(f"  not played    {', '.join(model.ignored_events)}")
    principals = stack.aws.principals
    if principals:
        credentials = options.credentials_file
        lines.append(f"  signers       {credentials} (AWS profiles) and {keys_file(credentials)} (for curl):")
        lines.extend(f"                {p.profile:<24} {p.arn}" for p in principals)
    lines.extend(f"  note          {note}" for note in stack.aws.notes)
    lines += ["", *try_it(api, options.region, stack), "", f"ready in {elapsed:.1f}s - Ctrl-C stops everything"]
    return "\n".join(lines)


def try_it(api: str, region: str, stack: LocalStack) -> list[str]:
    """Every call signed, as API Gateway's IAM authorizer wants: curl's own SigV4 with the keys of
    keys.env (the admin creates a client for the consumer, the consumer gets its token)."""
    principals = stack.aws.principals
    if len(principals) < 2:
        return ["Sign every request (SigV4, service execute-api) with the environment's credentials."]
    admin, consumer = principals[0], principals[1]
    sign = f'--aws-sigv4 "aws:amz:{region}:execute-api"'
    admin_user = f'--user "${admin.profile.upper().replace("-", "_")}"'
    consumer_user = f'--user "${consumer.profile.upper().replace("-", "_")}"'
    body = f'{{"name":"billing-service","consumers":["{consumer.arn}"]}}'
    return [
        "Try:",
        f"  . {keys_file(stack.options.credentials_file)}",
        f"  curl -s {sign} {admin_user} -X POST {api}/app-clients -H 'content-type: application/json' -d '{body}'",
        f"  curl -s {sign} {consumer_user} {api}/app-clients/billing-service/token",
        f"  curl -s {sign} {admin_user} -X POST {api}/app-clients/billing-service/rotations",
        "or from any AWS SDK or the AWS CLI (moto's IAM at the AWS address above):",
        f"  AWS_SHARED_CREDENTIALS_FILE={stack.options.credentials_file} aws --profile {consumer.profile} "
        f"--region {region} --endpoint-url {stack.aws.endpoint} sts get-caller-identity",
    ]


def _seconds(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"
