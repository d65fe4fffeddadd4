"""Write malformed ``numbers`` records to the dead-letter topic, whatever their size.

A dead letter keeps the original value, key, headers (a packed record's ``gumbel-format``
survives, so it can be decoded again) and timestamp (the dead letter's own Kafka timestamp, as
Kafka Connect's dead-letter queue keeps it), and adds where it came from and why: ours,
``error`` (``"<reason>: <detail>"``), ``error_reason`` (the reason alone, one of
``DEAD_LETTER_REASONS``), ``source_topic``, ``source_partition``, ``source_offset``,
``source_timestamp``; and Kafka Connect's ``__connect.errors.*`` context headers, as its
``DeadLetterQueueReporter`` writes them: ``topic``, ``partition``, ``offset``,
``connector.name`` (the model id), ``task.id`` (the ingest actor), ``stage``
(``VALUE_CONVERTER``: decoding the value failed), ``class.name`` (the decoder),
``exception.class.name`` (the exception's fully qualified class,
``services.common.codec.MalformedRecordError``) and ``exception.message``. There is no
``exception.stacktrace``: the decoder sets a record aside without raising, so there is no
trace to keep.

A name we add replaces the original record's header of that name (its other headers are kept,
in order). Connect appends instead, and its readers take the last header of a name; with one
header per name, a reader that takes the first (or builds a dict) reads the same.

A record the dead-letter topic cannot take must still never stop the trainer: a value larger
than ``max_value_bytes`` is written truncated (header ``gumbel-dlq-truncated`` with the
original size and SHA-256), an oversized key or header set is dropped (and said so), and a
dead letter the broker rejects anyway is written again with no value at all. Only when even
that fails is it lost, logged as an ERROR and counted in ``failed``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from services.common.codec import BadRecord, decode_values

__all__ = ["DeadLetterWriter", "dead_letter_headers", "with_headers", "DEFAULT_MAX_VALUE_BYTES"]

log = logging.getLogger(__name__)

# Half of kafka-python's default max_request_size (1 MiB) and of a default broker's
# max.message.bytes: room for the key and headers beside the value.
DEFAULT_MAX_VALUE_BYTES = 512 * 1024
# Original keys and header sets larger than this are dropped rather than truncated: a
# truncated key or header is a different key or header, not a shorter one.
MAX_KEY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024

KafkaHeaders = list[tuple[str, bytes]]

# The broker's answers that mean "not this record": rewriting it smaller can succeed. Any
# other failure (a broker down, a timeout) is the broker's, and the record is kept for later.
_RECORD_REJECTED = (
    MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError, CorruptRecordError,
)


# Kafka Connect's stage and class of the failing step: our value decoder.
CONNECT_STAGE = "VALUE_CONVERTER"
DECODER_CLASS = f"{decode_values.__module__}.{decode_values.__qualname__}"
CONNECT_PREFIX = "__connect.errors."


def _class_name(exc: BaseException) -> str:
    """The exception's fully qualified class name, as Connect writes ``getClass().getName()``."""
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    record: BadRecord, source_topic: str, connector_name: str | None = None,
    task_id: int | None = None,
) -> KafkaHeaders:
    """Where the record came from and why it was set aside (ours and Kafka Connect's names).

    ``connector_name`` and ``task_id`` (the model id and the ingest actor) are Connect's
    ``connector.name`` and ``task.id``, written when given.
    """
    exc = record.exception
    headers: KafkaHeaders = [
        ("error", record.error.encode("utf-8")),
        ("error_reason", exc.reason.encode("utf-8")),
        ("source_topic", source_topic.encode("utf-8")),
        ("source_partition", str(record.partition).encode("ascii")),
        ("source_offset", str(record.offset).encode("ascii")),
    ]
    if record.timestamp is not None:
        headers.append(("source_timestamp", str(record.timestamp).encode("ascii")))
    connect = [
        ("topic", source_topic.encode("utf-8")),
        ("partition", str(record.partition).encode("ascii")),
        ("offset", str(record.offset).encode("ascii")),
    ]
    if connector_name is not None:
        connect.append(("connector.name", connector_name.encode("utf-8")))
    if task_id is not None:
        connect.append(("task.id", str(task_id).encode("ascii")))
    connect += [
        ("stage", CONNECT_STAGE.encode("ascii")),
        ("class.name", DECODER_CLASS.encode("ascii")),
        ("exception.class.name", _class_name(exc).encode("ascii")),
        ("exception.message", str(exc).encode("utf-8")),
    ]
    return headers + [(CONNECT_PREFIX + name, value) for name, value in connect]


def with_headers(original: KafkaHeaders, added: KafkaHeaders) -> KafkaHeaders:
    """``original`` without the names in ``added`` (the rest kept in order), then ``added``."""
    names = {name for name, _ in added}
    return [(name, value) for name, value in original if name not in names] + added


def _size(value: bytes | None) -> int:
    return 0 if value is None else len(value)


class DeadLetterWriter:
    """Sends ``BadRecord``s to ``topic``; counts what was written, truncated and lost."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        source_topic: str = "numbers",
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        *,
        connector_name: str | None = None,
        task_id: int | None = None,
    ) -> None:
        self._producer = producer
        self._connector_name, self._task_id = connector_name, task_id
        self._topic = topic
        self._source_topic = source_topic
        self._max_value_bytes = max_value_bytes
        self.truncated = 0  # dead letters written with a truncated (or no) value
        self.failed = 0  # dead letters the broker would not take in any form: lost
        self._rejected: list[tuple[BadRecord, BaseException]] = []
        self._rejected_lock = threading.Lock()

    def write(self, records: Iterable[BadRecord]) -> int:
        """Queue each record for the dead-letter topic; how many were queued."""
        written = 0
        for record in records:
            self._send(record)
            written += 1
        return written

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every dead letter is acknowledged, rewriting the rejected ones bare.

        A broker that cannot be reached raises (``KafkaError``): the caller must not write a
        checkpoint past dead letters that are not stored.
        """
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.error("dead-letter flush failed: %s", exc)
            raise
        with self._rejected_lock:
            rejected, self._rejected = self._rejected, []
        if not rejected:
            return
        unstored = [(r, exc) for r, exc in rejected if not isinstance(exc, _RECORD_REJECTED)]
        for record, exc in rejected:
            if isinstance(exc, _RECORD_REJECTED):
                log.warning("dead letter of %s[%d]@%d rejected (%s: %s): writing it without "
                            "its value", self._source_topic, record.partition, record.offset,
                            type(exc).__name__, exc)
                self._send_bare(record)
        self._producer.flush(timeout=timeout_s)
        if unstored:
            record, exc = unstored[0]
            raise KafkaError(
                f"{len(unstored)} dead letters not stored, the first of "
                f"{self._source_topic}[{record.partition}]@{record.offset}: "
                f"{type(exc).__name__}: {exc}"
            )

    def _send(self, record: BadRecord) -> None:
        headers = self._headers(record)
        value, key = record.value, record.key
        if _size(value) > self._max_value_bytes:
            assert value is not None
            headers += [
                ("gumbel-dlq-truncated", b"true"),
                ("gumbel-dlq-original-size", str(len(value)).encode("ascii")),
                ("gumbel-dlq-original-sha256", hashlib.sha256(value).hexdigest().encode("ascii")),
            ]
            value = value[: self._max_value_bytes]
            self.truncated += 1
        if _size(key) > MAX_KEY_BYTES:
            headers.append(("gumbel-dlq-key-dropped", str(_size(key)).encode("ascii")))
            key = None
        original = [(name, data if data is not None else b"") for name, data in record.headers]
        if sum(len(name) + len(data) for name, data in original) > MAX_HEADER_BYTES:
            headers.append(("gumbel-dlq-headers-dropped", str(len(original)).encode("ascii")))
            original = []
        try:
            future = self._producer.send(
                self._topic, value=value, key=key, headers=with_headers(original, headers),
                timestamp_ms=record.timestamp,
            )
        except MessageSizeTooLargeError:  # kafka-python checks max_request_size in send()
            self._send_bare(record)
            return
        future.add_errback(self._on_rejected, record)

    def _send_bare(self, record: BadRecord) -> None:
        """The dead letter with no value, key or original headers: only why and whence."""
        headers = self._headers(record) + [
            ("gumbel-dlq-value-dropped", str(_size(record.value)).encode("ascii")),
        ]
        if _size(record.value) <= self._max_value_bytes:  # else counted when truncated
            self.truncated += 1
        try:
            future = self._producer.send(self._topic, value=None, headers=headers,
                                         timestamp_ms=record.timestamp)
        except KafkaError as exc:
            self._lost(record, exc)
            return
        future.add_errback(self._on_lost, record)

    def _headers(self, record: BadRecord) -> KafkaHeaders:
        return dead_letter_headers(record, self._source_topic, self._connector_name,
                                   self._task_id)

    def _on_rejected(self, exc: BaseException, record: BadRecord) -> None:
        # Runs on the producer's I/O thread: only note it; flush() rewrites it.
        with self._rejected_lock:
            self._rejected.append((record, exc))

    def _on_lost(self, exc: BaseException, record: BadRecord) -> None:
        self._lost(record, exc)

    def _lost(self, record: BadRecord, exc: BaseException) -> None:
        self.failed += 1
        log.error("dead letter of %s[%d]@%d lost: the dead-letter topic %s took it in no form "
                  "(%s: %s)", self._source_topic, record.partition, record.offset, self._topic,
                  type(exc).__name__, exc)
