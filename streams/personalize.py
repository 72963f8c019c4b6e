"""THE personalize agent: events in, one fresh recommendation per valid event out.

Per micro-batch (``stream.take_events(max_batch, within=window)``):

1. decode and validate every record (wire format, key = user_id, ``ts`` inside the
   accepted window); a bad one goes to the DLQ with its reason, its bytes (cut to a bounded
   size) and topic/partition/offset — never a crash, never a silent drop (a batch that
   fails later, e.g. on a bug, goes there too, reason ``processing_failed``);
2. read the batch's users' states from table ``user_state`` (each in its own partition);
3. ``engine.process`` on the compute thread — per A/B variant, each user's events through
   their variant's engine (streams/variants.py): state updates (an already-applied event id
   is not applied again), one batched FAISS search, one batched rerank, exactly one
   recommendation per event, each with its ``variant`` — the event loop stays free meanwhile;
   then each applied event is scored against the list its user was last served (live
   HR@k, streams/live.py);
4. publish the statistics delta the batch committed (global statistics,
   streams/shared_stats.py) and wait for its acknowledgement, so a stored state always has
   its delta on the broker; write the states back, emit every recommendation to
   ``recommendations`` (key user_id) and keep each user's latest in table ``recs``, then
   wait until the broker has acknowledged every recommendation of the batch;
5. metrics.

Crash safety (at-least-once emit, state applied once): Faust acks a batch's events when
this body returns and commits acked offsets every ``worker_commit_interval_s``. Its
pre-commit flush is not a barrier: ``ProducerBuffer.flush`` gives up after 0.1 s without
a send and does not count the message being handed over, so a commit could pass
recommendations still buffered in this process, and a ``kill -9`` then lost them for
good. Waiting for the acknowledgements here closes that gap: an event's offset is
committed only after its recommendation is on the broker. The buffer is one FIFO, so the
batch's changelog writes, queued before the recommendations, were handed to the Kafka
client before them, and the commit's client flush waits for those. A crash redelivers
the uncommitted tail: its events get their recommendation again (a duplicate message is
possible, a missing one is not), while the stored applied ids keep them from being
applied twice.

Nothing is committed that was not processed: Faust's ``take_events`` acks a batch's events
even when the agent raises, so Faust's restart of a crashed agent used to commit past
events it never answered. Here a batch that cannot be finished — its DLQ records refused
by the broker after ``worker_dlq_send_attempts`` tries, an unexpected error, a
cancellation at shutdown — is *held back* (:func:`~streamrec.streams.runtime.hold_back`):
its offsets never become committable, and on an error the worker stops loudly (exit
status 1) so its partitions are redelivered from the first unfinished event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from faust.types import EventT, Message, StreamT

from streamrec.streams.core.engine import PERSONALIZED, POPULAR
from streamrec.streams.core.state import UserState
from streamrec.streams.dlq import KEY_MISMATCH, PROCESSING_FAILED
from streamrec.streams.live import LiveConfig, LiveMetrics, Served, applied_flags, score_batch
from streamrec.streams.runtime import Runtime, hold_back, in_partition_of
from streamrec.streams.variants import Experiment, VariantEngines
from streamrec.streams.wire import Event, InvalidRecord, Recommendation, decode_event, pack

log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    """Attach the personalize agent to ``rt.app``."""
    s = rt.settings
    experiment = Experiment.from_specs(s.variants, s.experiment_salt)  # bad ones stop the start
    live = LiveMetrics(rt.metrics.registry, LiveConfig(tuple(s.live_ks)))
    shares = {v.name: v.share for v in experiment.variants}
    live.declare(shares, experiment.control.name, (PERSONALIZED, POPULAR))

    @rt.app.agent(rt.events, name="personalize")
    async def personalize(stream: StreamT) -> None:
        engine = await rt.run(
            VariantEngines.build, await rt.engine(), experiment, s.worker_artifacts_dir
        )
        await rt.global_stats.attach(engine)  # waits for the global statistics to catch up
        window_s = s.worker_batch_window_ms / 1000
        # take_events (not take): each event's message says where its user's state lives.
        async for batch in stream.take_events(s.worker_max_batch, window_s):  # type: ignore[attr-defined]
            try:
                await _handle(rt, engine, live, batch)
            except BaseException as exc:
                hold_back(batch)
                if not isinstance(exc, asyncio.CancelledError):
                    log.critical(
                        "stopping: a micro-batch of %d events could not be finished (%s: %s); "
                        "its offsets are not committed, so its events are redelivered",
                        len(batch),
                        type(exc).__name__,
                        exc,
                    )
                    await rt.app.crash(exc)
                raise


async def _handle(
    rt: Runtime, engine: VariantEngines, live: LiveMetrics, batch: Sequence[EventT]
) -> None:
    """One micro-batch: validate, personalize the valid events, dead-letter the rest; returns
    once every output (recommendations, DLQ records) is on the broker."""
    with rt.metrics.stage("decode"):
        valid, rejects = _validate(rt, batch)
    if valid:
        try:
            await _personalize(rt, engine, live, valid)
        except Exception as exc:  # a bug or a broken store must not drop the batch
            log.exception("micro-batch of %d events failed; sending it to the DLQ", len(valid))
            detail = f"{type(exc).__name__}: {exc}"
            rejects += [(raw.message, PROCESSING_FAILED, detail) for raw, _ in valid]
    if rejects:
        await rt.dead_letters.deliver(rejects)


async def _personalize(
    rt: Runtime, engine: VariantEngines, live: LiveMetrics, valid: list[tuple[EventT, Event]]
) -> None:
    """Steps 2–5 for the valid events of one micro-batch."""
    # The last event of each user decides the partition its state lives in (all of a
    # user's events share one partition, as the key is the user id).
    owner = {event.user_id: raw for raw, event in valid}
    events = [event for _, event in valid]
    with rt.metrics.stage("state_read"):
        states = _read_states(rt, owner)
    applied = applied_flags(events, states)  # before the engine updates the states
    with rt.metrics.stage("engine"):
        recs = await rt.run(engine.process, events, states)
    for stage, seconds in engine.stage_seconds().items():
        rt.metrics.stage_seconds.labels(stage).observe(seconds)
    with rt.metrics.stage("live"):
        control = engine.experiment.control.name
        served = _read_served(rt, owner, control)  # before this batch's lists replace them
        arrived = [raw.message.timestamp for raw, _ in valid]
        live.record(*score_batch(events, arrived, applied, served, recs, control))
    with rt.metrics.stage("share"):  # on the broker before the states: streams/shared_stats.py
        await rt.global_stats.publish(engine.last_deltas)
    with rt.metrics.stage("emit"):
        await _write_back(rt, owner, states, recs)
        sent_at = time.time()
    for raw, _ in valid:
        rt.metrics.event_to_emit_seconds.observe(max(0.0, sent_at - raw.message.timestamp))
    rt.metrics.events_processed.inc(len(events))


def _validate(
    rt: Runtime, batch: Sequence[EventT]
) -> tuple[list[tuple[EventT, Event]], list[tuple[Message, str, str]]]:
    """Decode and check each record: (raw event, decoded event) of the valid ones in order,
    and (message, reason, detail) of the bad ones, for the DLQ."""
    rt.metrics.events_in.inc(len(batch))
    rt.metrics.batch_size.observe(len(batch))
    valid = []
    rejects = []
    now_ms = rt.now_ms()
    for raw in batch:
        msg = raw.message
        rt.positions[msg.tp] = msg.offset + 1
        try:
            event = decode_event(msg.value or b"", rt.settings.max_event_bytes)
            rt.ts_window.check(event.ts, now_ms)
        except InvalidRecord as err:
            rejects.append((msg, err.reason.value, err.detail))
            continue
        if msg.key != event.user_id.encode():  # a keyless event too: its partition is random
            detail = f"message key {msg.key!r} is not the event's user_id {event.user_id!r}"
            rejects.append((msg, KEY_MISMATCH, detail))
            continue
        valid.append((raw, event))
    return valid, rejects


def _read_states(rt: Runtime, owner: dict[str, EventT]) -> dict[str, UserState]:
    """The stored state of every user that has one (new users are created by the engine)."""
    states = {}
    for user_id, raw in owner.items():
        with in_partition_of(raw):
            stored = rt.user_state.get(user_id)
        if stored is not None:
            states[user_id] = UserState.from_map(stored)
    return states


def _read_served(rt: Runtime, owner: dict[str, EventT], default_variant: str) -> dict[str, Served]:
    """The list each user of the batch was last served (table ``recs``), where there is one."""
    served = {}
    for user_id, raw in owner.items():
        with in_partition_of(raw):
            stored = rt.recs.get(user_id)
        if stored is not None:
            served[user_id] = Served.of_map(stored, default_variant)
    return served


async def _write_back(
    rt: Runtime,
    owner: dict[str, EventT],
    states: dict[str, UserState],
    recs: list[Recommendation],
) -> None:
    """Store states and latest recommendations, then emit every recommendation."""
    latest: dict[str, Recommendation] = {}
    for rec in recs:
        latest[rec.user_id] = rec
    for user_id, raw in owner.items():
        with in_partition_of(raw):
            rt.user_state[user_id] = states[user_id].to_map()
            if user_id in latest:
                rt.recs[user_id] = latest[user_id].to_map()
    # Queued behind the changelog writes above; awaited so the batch's offsets are acked
    # (and so committed) only once every recommendation is on the broker.
    sent = [
        rt.recommendations.send_soon(key=rec.user_id.encode(), value=pack(rec.to_map()))
        for rec in recs
    ]
    await asyncio.gather(*sent)
    for rec in recs:
        rt.metrics.recommendations.labels(rec.source).inc()
