"""THE personalize agent: events in, one fresh recommendation per valid event out.

Per micro-batch (what ``stream.take_events(max_batch, within=window)`` took; see **Pipelined**):

1. decode and validate every record (wire format, key = user_id, ``ts`` inside the
   accepted window); a bad one goes to the DLQ with its reason, its bytes (cut to a bounded
   size) and topic/partition/offset — never a crash, never a silent drop (a batch that
   fails while computing, e.g. on a bug, goes there too, reason ``processing_failed``);
2. read the batch's users' states from table ``user_state`` (each in its own partition);
3. ``engine.process`` on the compute thread — per A/B variant, each user's events through
   their variant's engine (streams/variants.py): state updates (an already-applied event id
   is not applied again), one batched FAISS search, one batched rerank, exactly one
   recommendation per event, each with its ``variant`` — the event loop stays free meanwhile;
   then each applied event is scored against the list its user was last served (live
   HR@k, streams/live.py);
4. publish the statistics delta the batch committed (global statistics,
   streams/shared_stats.py; a batch that failed after its engine committed too) and wait
   for its acknowledgement, so a stored state always has
   its delta on the broker; write the states back, emit every recommendation to
   ``recommendations`` (key user_id) and keep each user's latest in table ``recs``, then
   wait until the broker has acknowledged every recommendation and changelog record of the
   batch (sent as record batches: streams/emit.py);
5. metrics.

**Pipelined** (:class:`Pipeline`). Taking, computing and writing out overlap: the agent
puts every batch Faust takes into an inbox and goes on taking; one task computes what the
inbox holds (at most ``worker_max_batch`` events) as one micro-batch (steps 1-3), then
hands it to its write-out (step 4, :func:`_write_out`, a task of its own) once the
previous write-out has finished, and computes the next. So the compute thread does not
idle during emit, and a micro-batch fills while the one before it is computed: under a
backlog it grows towards the maximum (here, 200k items, 2 busy cores: 112-196 events on
average, where the serial agent had ~70 and computing each 5 ms take as it came had
20-31, paying per-batch costs three times as often), under a light load it goes as soon
as it is taken. Bounded: one batch being written out, one computing, and the inbox takes one
more batch once it holds ``worker_max_batch`` events. Deltas, states and recommendations
reach the broker in batch order. Batch n's states and latest lists are kept as maps
(:class:`Output`) until they are in the tables; batch n+1 reads its users' states and
last lists there first, so a user's state built by batch n is the one batch n+1 starts
from, stored or not. The maps are taken before batch n+1's engine runs: it cannot change
what batch n stores.

Crash safety (at-least-once emit, state applied once): Faust acks a batch's events when the
agent takes the next batch and commits acked offsets every ``worker_commit_interval_s``.
Here that ack is deferred (:func:`~streamrec.streams.runtime.defer_ack`): a batch's events
become committable only when its write-out has finished — its delta, changelog writes and
every recommendation acknowledged (:func:`~streamrec.streams.runtime.release`). Faust's
pre-commit flush is not a barrier (``ProducerBuffer.flush`` gives up after 0.1 s without a
send and does not count the message being handed over), so without this a commit could
pass recommendations still buffered in this process, and a ``kill -9`` then lost them for
good. The batch's table changelog records and recommendations are sent by the write-out
itself, as record batches (streams/emit.py), and all of them are acknowledged before the
batch is released: a committed offset never passes a state the broker does not have. A
crash redelivers the uncommitted tail: its events get their recommendation again (a
duplicate message is possible, a missing one is not), while the stored applied ids keep
them from being applied twice. A deferred batch counts as in
flight for the consumer, so a rebalance waits for its write-out.

Nothing is committed that was not processed: Faust's ``take_events`` acks a batch's events
even when the agent raises, so Faust's restart of a crashed agent used to commit past
events it never answered. Here a batch that cannot be finished — its write-out failing
(the broker or the store, not the batch: its delta, states or recommendations not taken,
its DLQ records refused after ``worker_dlq_send_attempts`` tries), an unexpected error, a
cancellation at shutdown (the batch being written out too) — is *held back*
(:func:`~streamrec.streams.runtime.hold_back`): its offsets never become committable, and
on an error the worker stops loudly (exit status 1) so its partitions are redelivered
from the first unfinished event. A failure while computing (steps 1-3: a bug) sends the
batch's valid events to the DLQ instead, reason ``processing_failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import EventT, Message, StreamT

from streamrec.streams.core.engine import PERSONALIZED, POPULAR
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import StatsDelta
from streamrec.streams.dlq import KEY_MISMATCH, PROCESSING_FAILED
from streamrec.streams.live import LiveConfig, LiveMetrics, Served, applied_flags, score_batch
from streamrec.streams.runtime import Runtime, defer_ack, hold_back, in_partition_of, release
from streamrec.streams.variants import Experiment, VariantEngines
from streamrec.streams.wire import Event, InvalidRecord, Recommendation, decode_event, pack

log = logging.getLogger(__name__)


@dataclass
class Output:
    """A computed micro-batch's outputs, from its compute until they are on the broker."""

    #: The event of each user that places the user's state (its partition).
    owner: dict[str, EventT]
    #: Each valid event's Kafka timestamp (s), for event -> emit latency.
    arrived: list[float]
    recs: list[Recommendation]
    #: user -> state map and user -> latest recommendation map, to store. Until they are
    #: in the tables (``stored``), the next batch reads its users' states and last lists here.
    states: dict[str, dict[str, Any]]
    latest: dict[str, dict[str, Any]]
    stored: bool = False


@dataclass
class Work:
    """One micro-batch: its events, its rejects (for the DLQ), what its engines committed
    to the statistics and, unless the compute failed, its outputs."""

    batch: Sequence[EventT]
    rejects: list[tuple[Message, str, str]]
    deltas: Sequence[StatsDelta] = ()
    output: Output | None = None


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
            VariantEngines.build,
            await rt.engine(),
            experiment,
            s.worker_artifacts_dir,
            s.engine_reranker,
        )
        await rt.global_stats.attach(engine)  # waits for the global statistics to catch up
        pipeline = Pipeline(rt, engine, live, stream)
        window_s = s.worker_batch_window_ms / 1000
        try:
            # take_events (not take): each event's message says where its user's state lives.
            async for batch in stream.take_events(s.worker_max_batch, window_s):  # type: ignore[attr-defined]
                defer_ack(batch)  # acked by _write_out, once its outputs are on the broker
                await pipeline.put(batch)
        finally:
            await pipeline.stop()  # what it still holds is held back: redelivered


class Pipeline:
    """Events taken, computed and written out, three at once (see the module's doc).

    The agent puts each batch Faust takes into the inbox and goes on taking; one task
    computes whatever the inbox holds (``worker_max_batch`` events at most) as one
    micro-batch, then starts its write-out once the previous one has finished. So a batch
    fills while the one before it is computed (under a backlog, up to the maximum) and is
    computed while the one before it is written out; the inbox takes at most one more
    batch once it holds ``worker_max_batch`` events (the agent waits meanwhile).
    """

    def __init__(
        self, rt: Runtime, engine: VariantEngines, live: LiveMetrics, stream: StreamT
    ) -> None:
        self.rt, self.engine, self.live, self.stream = rt, engine, live, stream
        self.max_batch = rt.settings.worker_max_batch
        self.inbox: list[EventT] = []
        self.arrived = asyncio.Event()  # set while the inbox holds events
        self.room = asyncio.Event()  # set while the inbox holds less than a batch
        self.room.set()
        self.computing: list[EventT] = []
        #: The batch whose outputs are on their way to the broker (at most one).
        self.writing: asyncio.Task[None] | None = None
        self.task = asyncio.ensure_future(self._compute_all())

    async def put(self, batch: Sequence[EventT]) -> None:
        """Add a taken batch; waits while the inbox is full. Raises what stopped the
        pipeline, if it has stopped."""
        try:
            if not self.room.is_set():
                room = asyncio.ensure_future(self.room.wait())
                try:
                    await asyncio.wait([self.task, room], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    room.cancel()
            if self.task.done():
                await self.task  # raises: it ends on an error only
        except BaseException:
            hold_back(batch)
            raise
        self.inbox.extend(batch)
        self.arrived.set()
        if len(self.inbox) >= self.max_batch:
            self.room.clear()

    async def stop(self) -> None:
        """The agent is done: stop computing and writing; hold back what is unfinished."""
        self.task.cancel()
        await asyncio.wait([self.task])
        hold_back(self.inbox)

    async def _compute_all(self) -> None:
        previous: Output | None = None
        try:
            while True:
                await self.arrived.wait()
                self.computing = self.inbox[: self.max_batch]
                del self.inbox[: self.max_batch]
                if not self.inbox:
                    self.arrived.clear()
                if len(self.inbox) < self.max_batch:
                    self.room.set()
                work = await _compute(self.rt, self.engine, self.live, self.computing, previous)
                if self.writing is not None:
                    await self.writing  # the bound: one batch in flight beyond this one
                self.writing = asyncio.ensure_future(_write_out(self.rt, self.stream, work))
                self.computing, previous = [], work.output
        except BaseException as exc:
            unfinished = self.computing + self.inbox
            if self.writing is not None and not self.writing.done():
                self.writing.cancel()  # its batch is held back: redelivered, answered again
            if _failed_with(self.writing, exc):  # it has stopped the worker already
                hold_back(unfinished)
            else:
                await _give_up(self.rt, unfinished, exc)
            raise


def _failed_with(task: asyncio.Task[None] | None, exc: BaseException) -> bool:
    """Whether ``task`` is done and failed with ``exc`` (not cancelled)."""
    return task is not None and task.done() and not task.cancelled() and task.exception() is exc


async def _give_up(rt: Runtime, batch: Sequence[EventT], exc: BaseException) -> None:
    """``batch`` cannot be finished: hold it back and, unless the worker is stopping
    anyway (a cancellation), stop it loudly."""
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


async def _compute(
    rt: Runtime,
    engine: VariantEngines,
    live: LiveMetrics,
    batch: Sequence[EventT],
    previous: Output | None,
) -> Work:
    """Steps 1-3 of one micro-batch: validate, personalize the valid events (reading what
    ``previous`` has not stored yet from it), score them live; a failure sends the valid
    events to the DLQ instead."""
    with rt.metrics.stage("decode"):
        valid, rejects = _validate(rt, batch)
    work = Work(batch, rejects)
    if valid:
        try:
            work.output = await _personalize(rt, engine, live, valid, previous)
        except Exception as exc:  # a bug must not drop the batch
            log.exception("micro-batch of %d events failed; sending it to the DLQ", len(valid))
            detail = f"{type(exc).__name__}: {exc}"
            rejects += [(raw.message, PROCESSING_FAILED, detail) for raw, _ in valid]
        # Published even when the batch failed after its engine committed: this worker
        # counts those events now, so every worker must (see streams/shared_stats.py).
        work.deltas = engine.take_deltas()
    return work


async def _write_out(rt: Runtime, stream: StreamT, work: Work) -> None:
    """Steps 4-5: publish, store, emit, dead-letter; then the batch's events are acked (so
    committable). Anything that fails here — the broker or the store, not the batch —
    stops the worker with the batch held back."""
    try:
        with rt.metrics.stage("share"):  # on the broker before the states: shared_stats.py
            await rt.global_stats.publish(work.deltas)
        if work.output is not None:
            await _emit(rt, work.output)
        if work.rejects:
            await rt.dead_letters.deliver(work.rejects)
    except BaseException as exc:
        await _give_up(rt, work.batch, exc)
        raise
    await release(stream, work.batch)


async def _personalize(
    rt: Runtime,
    engine: VariantEngines,
    live: LiveMetrics,
    valid: list[tuple[EventT, Event]],
    previous: Output | None,
) -> Output:
    """Steps 2-3 for the valid events of one micro-batch."""
    # The last event of each user decides the partition its state lives in (all of a
    # user's events share one partition, as the key is the user id).
    owner = {event.user_id: raw for raw, event in valid}
    events = [event for _, event in valid]
    unstored = previous if previous is not None and not previous.stored else None
    with rt.metrics.stage("state_read"):
        states = _read_states(rt, owner, unstored)
    applied = applied_flags(events, states)  # before the engine updates the states
    with rt.metrics.stage("engine"):
        recs = await rt.run(engine.process, events, states)
    for stage, seconds in engine.stage_seconds().items():
        rt.metrics.stage_seconds.labels(stage).observe(seconds)
    unstored = previous if previous is not None and not previous.stored else None
    with rt.metrics.stage("live"):
        control = engine.experiment.control.name
        served = _read_served(rt, owner, control, unstored)  # before this batch's lists
        arrived = [raw.message.timestamp for raw, _ in valid]
        live.record(*score_batch(events, arrived, applied, served, recs, control))
    with rt.metrics.stage("snapshot"):  # maps, so the next batch's engine cannot touch them
        latest = {rec.user_id: rec for rec in recs}
        return Output(
            owner,
            arrived,
            recs,
            {user: states[user].to_map() for user in owner},
            {user: rec.to_map() for user, rec in latest.items()},
        )


async def _emit(rt: Runtime, out: Output) -> None:
    """Steps 4-5 once the batch's deltas are on the broker: the tables, every
    recommendation, acknowledged; metrics."""
    with rt.metrics.stage("emit"):
        await _write_back(rt, out)
        sent_at = time.time()
    for arrived in out.arrived:
        rt.metrics.event_to_emit_seconds.observe(max(0.0, sent_at - arrived))
    rt.metrics.events_processed.inc(len(out.recs))


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


def _read_states(
    rt: Runtime, owner: dict[str, EventT], unstored: Output | None
) -> dict[str, UserState]:
    """The latest state of every user that has one: ``unstored``'s (the previous batch,
    still being written) where it has the user, else the table's (new users are created by
    the engine)."""
    states = {}
    for user_id, raw in owner.items():
        stored = unstored.states.get(user_id) if unstored is not None else None
        if stored is None:
            with in_partition_of(raw):
                stored = rt.user_state.get(user_id)
        if stored is not None:
            states[user_id] = UserState.from_map(stored)
    return states


def _read_served(
    rt: Runtime, owner: dict[str, EventT], default_variant: str, unstored: Output | None
) -> dict[str, Served]:
    """The list each user of the batch was last served (``unstored``'s, else table
    ``recs``), where there is one."""
    served = {}
    for user_id, raw in owner.items():
        stored = unstored.latest.get(user_id) if unstored is not None else None
        if stored is None:
            with in_partition_of(raw):
                stored = rt.recs.get(user_id)
        if stored is not None:
            served[user_id] = Served.of_map(stored, default_variant)
    return served


async def _write_back(rt: Runtime, out: Output) -> None:
    """Store states and latest recommendations, then send their changelog records and
    every recommendation as record batches (streams/emit.py), all acknowledged before the
    batch's offsets are acked (and so committed)."""
    for user_id, raw in out.owner.items():
        with in_partition_of(raw):
            rt.user_state[user_id] = out.states[user_id]
            if user_id in out.latest:
                rt.recs[user_id] = out.latest[user_id]
    out.stored = True  # the next batch reads the tables from now on
    recs = [(rec.user_id.encode(), pack(rec.to_map()), None) for rec in out.recs]
    await asyncio.gather(
        rt.sender.flush_changelog(rt.user_state),
        rt.sender.flush_changelog(rt.recs),
        rt.sender.send(rt.settings.topic_recommendations, recs),
    )
    for rec in out.recs:
        rt.metrics.recommendations.labels(rec.source).inc()
