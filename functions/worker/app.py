"""The worker: the scheduled jobs' due work, one client per message of the work queue (an SQS event
source mapping with ReportBatchItemFailures, see template.yaml). A message that names no work of this
stack is reported failed, so that SQS redelivers it and then moves it to the dead-letter queue; every
other message is acknowledged (work that failed stays due in the table, ``zus_m2m.work.worker``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import logs, wiring
from zus_m2m.settings import Settings

metrics = Metrics()
logger = logs.function_logger("worker", metrics)
settings = Settings.from_env()
work = wiring.Container(settings, metrics).worker()
# A batch whose every message is refused is still an answer (its failures), not an error of the function.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> str:
    return work.run_message(record.body)


@logger.inject_lambda_context
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    return dict(answer)
