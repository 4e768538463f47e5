"""Queue distribution: one SQS standard queue per job, one message per input file.

A node takes one message per free slot and holds it (a lease) while the file is processed,
extending its visibility from the job's heartbeat. The message is deleted only after the
file's marker or report is written; on a stop it is released at once (visibility 0) so another
node takes the file within seconds. A node that dies holding one simply stops extending it:
after the visibility timeout SQS hands the file to another node. A file that keeps failing
moves to the dead-letter queue after `max_receive_count` receives.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from decon.config import Config
from decon.errors import UserError
from decon.fleet.instances import JOB_TAG
from decon.jobrun.endpoints import JobOutputs, JobStorage, open_source
from decon.jobrun.inputs import FilePlan, InputFile, file_plan, make_plan
from decon.storage import RetryPolicy, aws_client

SEND_BATCH = 10  # SQS's limit per SendMessageBatch


def queue_name(job_id: str, dead_letter: bool = False) -> str:
    """`decon-{job}` (`-dlq` for the dead-letter queue), within SQS's 80 characters."""
    base = "decon-" + re.sub(r"[^A-Za-z0-9_-]", "-", job_id)
    return base[: 80 - 4] + "-dlq" if dead_letter else base[:80]


def sqs_client(cfg: Config) -> Any:
    return aws_client("sqs", cfg.aws, attempts=1)


def create_job_queues(sqs: Any, cfg: Config) -> str:
    """The job's queue and its dead-letter queue, tagged `decon:job`; returns the queue URL.
    Idempotent: an existing queue with the same attributes is returned as it is."""
    tags = {JOB_TAG: cfg.job.id}
    dlq_url = sqs.create_queue(QueueName=queue_name(cfg.job.id, dead_letter=True), tags=tags)[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(cfg.run.max_receive_count)}
    attributes = {
        "VisibilityTimeout": str(cfg.run.visibility_timeout_seconds),
        "MessageRetentionPeriod": str(14 * 24 * 3600),
        "RedrivePolicy": json.dumps(redrive),
    }
    return sqs.create_queue(QueueName=queue_name(cfg.job.id), Attributes=attributes, tags=tags)[
        "QueueUrl"
    ]


def enqueue_files(sqs: Any, queue_url: str, files: Iterable[InputFile]) -> int:
    """One message per file, largest first, in batches; returns how many were sent."""
    ordered = sorted(files, key=lambda f: (-f.size, f.rel))
    for start in range(0, len(ordered), SEND_BATCH):
        batch = ordered[start : start + SEND_BATCH]
        entries = [{"Id": str(i), "MessageBody": encode_file(f)} for i, f in enumerate(batch)]
        reply = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if reply.get("Failed"):
            first = reply["Failed"][0]
            raise UserError(
                f"queue {queue_url}: could not enqueue {batch[int(first['Id'])].rel}: "
                f"{first.get('Message') or first.get('Code')}"
            )
    return len(ordered)


@dataclass(frozen=True)
class QueueFill:
    url: str
    enqueued: int
    already_queued: int  # messages the queue held before (then nothing is enqueued)
    collisions: int  # inputs left out: another input has the same output basename


def fill_job_queue(cfg: Config) -> QueueFill:
    """Create the job's queues and enqueue every input file not done yet, unless the queue
    already holds messages (a relaunch or `--add` never enqueues a file twice)."""
    sqs = sqs_client(cfg)
    url = create_job_queues(sqs, cfg)
    queue = WorkQueue(
        sqs, url, cfg.run.visibility_timeout_seconds, RetryPolicy.job_transfers(cfg.run)
    )
    before = queue.counts()
    held = before.visible + before.in_flight
    if held:
        return QueueFill(url, 0, held, 0)
    io = JobStorage.for_job(cfg.run, cfg.aws)
    source = open_source(cfg.input.uri, io)
    outputs = JobOutputs(cfg.output_prefix("reports"), cfg.output_prefix("cleaned"), io)
    plan = make_plan(source.list(), 0, 1, outputs.done_keys())
    sent = enqueue_files(sqs, url, [fp.input for fp in plan.todo])
    return QueueFill(url, sent, 0, len(plan.collisions))


def encode_file(item: InputFile) -> str:
    return json.dumps({"rel": item.rel, "size": item.size, "location": item.location})


def decode_file(body: str) -> InputFile:
    data = json.loads(body)
    return InputFile(str(data["rel"]), int(data["size"]), str(data["location"]))


@dataclass
class Lease:
    """One received message: the file it names and the handle that extends or ends it."""

    plan: FilePlan
    receipt: str
    message_id: str


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    dead: int = 0


@dataclass(frozen=True)
class QueueSummary:
    """What `decon status` shows of the job's queue."""

    url: str
    counts: QueueCounts
    dead_files: list[str]  # files of the dead-letter queue (the first few)
    max_receive_count: int
    errors: dict[str, str] = field(default_factory=dict)  # dead file -> its last error

    def render(self) -> str:
        c = self.counts
        lines = [f"queue: {c.visible} waiting, {c.in_flight} in flight, {c.dead} dead-letter"]
        for rel in self.dead_files:
            why = self.errors.get(rel, "its FILE_FAILED lines are in the runs' decon-run.log")
            lines.append(f"  dead-letter: {rel} (failed {self.max_receive_count} times: {why})")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            **vars(self.counts),
            "dead_files": self.dead_files,
            "errors": self.errors,
        }


def queue_summary(cfg: Config, peek: int = 10) -> QueueSummary:
    """The job queue's counts and the files of its dead-letter queue (peeked: visibility 0,
    so they stay there for the user to inspect or redrive)."""
    queue = WorkQueue.open(cfg)
    dead: list[str] = []
    if queue.dlq_url is not None:
        reply = queue.sqs.receive_message(
            QueueUrl=queue.dlq_url, MaxNumberOfMessages=min(peek, 10), VisibilityTimeout=0
        )
        dead = sorted(decode_file(m["Body"]).rel for m in reply.get("Messages", []))
    return QueueSummary(queue.url, queue.counts(), dead, cfg.run.max_receive_count)


class WorkQueue:
    """This node's side of the job queue: receive, extend, delete, release (with retries)."""

    def __init__(
        self,
        sqs: Any,
        url: str,
        visibility_seconds: int,
        retry: RetryPolicy,
        dlq_url: str | None = None,
        on_retry: Callable[[str, int, BaseException, float], None] | None = None,
    ) -> None:
        self.sqs = sqs
        self.url = url
        self.visibility_seconds = visibility_seconds
        self.retry = retry
        self.dlq_url = dlq_url
        self.on_retry = on_retry

    @classmethod
    def open(
        cls, cfg: Config, on_retry: Callable[[str, int, BaseException, float], None] | None = None
    ) -> WorkQueue:
        """The job's queue, found by name (or `run.queue_url`)."""
        sqs = sqs_client(cfg)
        try:
            url = (
                cfg.run.queue_url or sqs.get_queue_url(QueueName=queue_name(cfg.job.id))["QueueUrl"]
            )
            dlq = sqs.get_queue_url(QueueName=queue_name(cfg.job.id, dead_letter=True))
        except sqs.exceptions.QueueDoesNotExist:
            raise UserError(
                f"run.distribution queue: no queue {queue_name(cfg.job.id)!r} "
                "(decon launch creates it; or set run.queue_url)"
            ) from None
        retry = RetryPolicy.job_transfers(cfg.run)
        return cls(sqs, url, cfg.run.visibility_timeout_seconds, retry, dlq["QueueUrl"], on_retry)

    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        def report(attempt: int, exc: BaseException, wait: float) -> None:
            if self.on_retry is not None:
                self.on_retry(op, attempt, exc, wait)

        return self.retry.call(fn, on_retry=report)

    def receive(self, wait_seconds: int = 1) -> Lease | None:
        reply = self._call(
            "sqs:ReceiveMessage",
            lambda: self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=self.visibility_seconds,
            ),
        )
        for message in reply.get("Messages", []):
            return Lease(
                file_plan(decode_file(message["Body"])),
                message["ReceiptHandle"],
                message["MessageId"],
            )
        return None

    def extend(self, lease: Lease) -> None:
        self._visibility(lease, self.visibility_seconds)

    def release(self, lease: Lease) -> None:
        self._visibility(lease, 0)

    def _visibility(self, lease: Lease, seconds: int) -> None:
        self._call(
            "sqs:ChangeMessageVisibility",
            lambda: self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=lease.receipt, VisibilityTimeout=seconds
            ),
        )

    def delete(self, lease: Lease) -> None:
        self._call(
            "sqs:DeleteMessage",
            lambda: self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=lease.receipt),
        )

    def counts(self) -> QueueCounts:
        def approx(url: str | None) -> dict[str, str]:
            if url is None:
                return {}
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            reply = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            return reply["Attributes"]

        main = self._call("sqs:GetQueueAttributes", lambda: approx(self.url))
        dead = self._call("sqs:GetQueueAttributes", lambda: approx(self.dlq_url))
        return QueueCounts(
            int(main["ApproximateNumberOfMessages"]),
            int(main["ApproximateNumberOfMessagesNotVisible"]),
            int(dead.get("ApproximateNumberOfMessages", 0)),
        )


class Leases:
    """The messages this node holds, by file; what the pipeline's outcomes do to them."""

    def __init__(
        self, queue: WorkQueue, slots: int, on_error: Callable[[str, Exception], None]
    ) -> None:
        self.queue = queue
        self.slots = slots
        self.on_error = on_error
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self.freed = threading.Event()

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease.plan.input.rel] = lease

    def _take(self, rel: str) -> Lease | None:
        with self._lock:
            lease = self._held.pop(rel, None)
        self.freed.set()
        return lease

    def done(self, fp: FilePlan) -> None:
        """The file's marker is written: the message is finished."""
        if (lease := self._take(fp.input.rel)) is not None:
            self._quietly("delete", lease, self.queue.delete)

    def released(self, fp: FilePlan) -> None:
        """Failed or abandoned: visible again at once (a failure counts toward the DLQ)."""
        if (lease := self._take(fp.input.rel)) is not None:
            self._quietly("release", lease, self.queue.release)

    def extend_all(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for lease in held:
            self._quietly("extend", lease, self.queue.extend)

    def release_all(self) -> None:
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for lease in held:
            self._quietly("release", lease, self.queue.release)

    def _quietly(self, what: str, lease: Lease, op: Callable[[Lease], None]) -> None:
        try:
            op(lease)
        except Exception as exc:  # the message comes back after its timeout: never fatal
            self.on_error(f"{what} {lease.plan.input.rel}", exc)


def queue_files(
    queue: WorkQueue,
    leases: Leases,
    is_done: Callable[[FilePlan], bool],
    on_skip: Callable[[FilePlan], None],
    stop: Callable[[], bool],
    poll_seconds: float = 2.0,
) -> Iterator[FilePlan]:
    """Files from the queue, one per free slot, until the queue holds no message (visible or
    in flight, twice in a row) and this node none. A redelivered file that is already done is
    skipped and its message deleted."""
    drained_once = False
    while not stop():
        if len(leases) >= leases.slots:
            leases.freed.wait(poll_seconds)
            leases.freed.clear()
            continue
        lease = queue.receive()
        if lease is not None:
            drained_once = False
            if is_done(lease.plan):
                queue.delete(lease)
                on_skip(lease.plan)
                continue
            leases.hold(lease)
            yield lease.plan
            continue
        counts = queue.counts()
        if counts.visible == 0 and counts.in_flight == 0 and not len(leases):
            if drained_once:
                return
            drained_once = True
        else:
            drained_once = False
        time.sleep(poll_seconds if counts.visible == 0 else 0)
