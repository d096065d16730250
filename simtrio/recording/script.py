"""Turning a recorded run into a replay script (sans-IO; the replay server only executes it).

A script has the create the client must send, the handshake frames answered to it, and one
*track* per (sub-)session: its recorded control frames, the requests the client wrote (each an
expected step) and its data-plane notifications, in recorded order. Executing a track means:
send frames until the next expected request, wait for the client's request and compare it, go
on. Data items are handed to the session's live subscriptions at their recorded position, so
the notifications of a step go out after the continue that caused them and before the control
frames recorded after them.

A replay never drops a connection, so what a recorded re-attach added is left out where a
client on one connection would treat it differently: the attach and resume requests and their
replies, a readiness event the server re-announced while the client still held the previous
one (the client dropped it; on replay, whether it is dropped would depend on timing), frames of
a connection whose create had to be re-sent, and recorded ``subscriptionComplete`` terminals
(the replay sends its own once the session has completed). Numbered frames the server sent
again after a re-attach *are* replayed: the client drops them by sequence number, exactly as it
did when they were recorded.

Notifications recorded after their session's ``completed`` frame (the control frame arrives
before the data plane has drained) are moved in front of it, since the replay ends a session's
subscriptions when it sends ``completed``; the client delivers ``Completed`` after every
notification either way.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import attrs
import orjson

from simtrio.errors import ProtocolError
from simtrio.recording.errors import StoreError
from simtrio.recording.format import EVENT_KIND_PREFIX, Plane
from simtrio.wire import codec, rpc, types

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simtrio.recording.records import Entry, RunManifest


@attrs.frozen
class SendFrame:
    """A control frame to send as recorded."""

    text: str
    seq_id: int | None = None
    """The sub-session ``seq_id`` of a ``sessionEventV2`` (the frame's ``seqId`` otherwise)."""
    completes: bool = False
    """A ``completed``: the session's subscriptions get their terminals just before it."""


@attrs.frozen
class Expect:
    """A request the client must send at this point (``step`` counts from 1 per session)."""

    request: types.BacktestRequest
    text: str
    step: int


@attrs.frozen
class DataItem:
    """A data-plane notification for the session's subscriptions."""

    kind: str
    """``accountDiffNotification``, ``transactionNotification`` or ``logsNotification``."""
    topic: str | None
    """The program id of the subscription it was recorded from, when known."""
    message: rpc.AccountDiffNotification | rpc.TransactionNotification | rpc.LogsNotification
    text: str

    @property
    def slot(self) -> int:
        return self.message.slot


TrackItem: TypeAlias = SendFrame | Expect | DataItem


@attrs.frozen
class RpcCall:
    """A recorded per-session JSON-RPC call: what was asked, and the answer to give back."""

    method: str
    params: str
    """The request's ``params`` as canonical JSON text (``null`` when there were none)."""
    answer: str
    """The recorded ``{"result": …}`` or ``{"error": …}`` object, as JSON text."""


@attrs.frozen
class Track:
    session_id: str
    items: tuple[TrackItem, ...]
    start_seq: int = 0
    """The session's last ``seq_id`` sent during the handshake (parallel runs)."""
    rpc: tuple[RpcCall, ...] = ()
    """The session's recorded RPC calls, in the order they were answered."""

    @property
    def steps(self) -> int:
        return sum(1 for item in self.items if isinstance(item, Expect))


@attrs.frozen
class ReplayScript:
    run_id: str
    create: types.CreateBacktestSessionRequest
    create_text: str
    parallel: bool
    handshake: tuple[str, ...]
    """Frames answered to a matching create, in order."""
    tracks: Mapping[str, Track]
    """One per (sub-)session, in session order."""


def _decode_error(entry: Entry, exc: Exception) -> StoreError:
    return StoreError(f"entry {entry.seq} ({entry.kind}) cannot be replayed: {exc}")


def _find_create(
    manifest: RunManifest, entries: list[Entry]
) -> tuple[types.CreateBacktestSessionRequest, str]:
    texts = [e.text for e in entries if e.plane is Plane.SENT and e.kind == "createBacktestSession"]
    if manifest.create_request is not None:
        texts.append(manifest.create_request)
    for text in texts:
        try:
            request = codec.decode_request(text)
        except ProtocolError:
            continue
        if isinstance(request, types.CreateBacktestSessionRequest):
            return request, text
    raise StoreError(f"run {manifest.run_id} has no create request to replay")


def _local_endpoint(response: types.BacktestResponse) -> types.BacktestResponse:
    """Point an absolute data-plane endpoint at the replay server (relative endpoints stay)."""
    if isinstance(response, types.SessionCreated) and response.rpc_endpoint.startswith(
        ("http://", "https://")
    ):
        return attrs.evolve(response, rpc_endpoint=f"/backtest/{response.session_id}")
    return response


class _Fate(enum.Enum):
    ACTED_ON = "acted on"
    DUPLICATE = "duplicate"
    """Sent again by the server; replayed, and dropped by the client by sequence number."""
    LEFT_OUT = "left out"


_ACTED_ON: Final = _Fate.ACTED_ON
_DUPLICATE: Final = _Fate.DUPLICATE
_LEFT_OUT: Final = _Fate.LEFT_OUT


def _is_readiness(response: types.BacktestResponse | types.SessionEvent) -> bool:
    return isinstance(response, types.ReadyForContinue | types.Paused)


class _Builder:
    def __init__(self, manifest: RunManifest, entries: list[Entry]) -> None:
        self.run_id = manifest.run_id
        self.create, self.create_text = _find_create(manifest, entries)
        self.parallel = self.create.parallel
        self.entries = entries
        self.handshake: list[str] = []
        self.items: dict[str, list[TrackItem]] = {}
        self.rpc: dict[str, list[RpcCall]] = {}
        self.steps: dict[str, int] = {}
        self.seqs: dict[str, int] = {}
        self.last_route: str | None = None
        # What the recorded client's core knew, to tell which frames it acted on (raw frames).
        self.held: set[str] = set()
        """Sessions whose driver held a readiness event not yet answered by a written continue."""
        self.completes_at: dict[str, int] = {}
        """Per track, the position of its ``completed`` frame (later notifications go before)."""
        self.attaching = False
        self.resume_pending = False

    def _open_track(self, session_id: str) -> None:
        if session_id not in self.items:
            self.items[session_id] = []
            self.steps[session_id] = 0

    # -- the handshake ---------------------------------------------------------------------

    def handshake_bounds(self) -> tuple[int, int]:
        """Where the handshake frames start (just past the last create sent before the reply)
        and end (just past the reply); ``(0, -1)`` if the recording has none (single only)."""
        start = 0
        for index, entry in enumerate(self.entries):
            if entry.plane is Plane.SENT and entry.kind == "createBacktestSession":
                start = index + 1
                continue
            if entry.plane is not Plane.CONTROL or entry.kind.startswith(EVENT_KIND_PREFIX):
                continue
            try:
                response = codec.decode_response(entry.payload)
            except ProtocolError as exc:
                raise _decode_error(entry, exc) from None
            if not self.parallel and isinstance(response, types.SessionCreated):
                self._open_track(response.session_id)
                return start, index + 1
            if self.parallel and isinstance(response, types.SessionsCreatedV2):
                for session_id in response.session_ids:
                    self._open_track(session_id)
                return start, index + 1
        if self.parallel:
            raise StoreError(
                f"run {self.run_id} has no sessionsCreatedV2 reply: record control frames as "
                "received to make a parallel run replayable"
            )
        return 0, -1

    def build(self) -> ReplayScript:
        start, end = self.handshake_bounds()
        if end < 0:
            self._synthesize_created()
            rest = self.entries
        else:
            for entry in self.entries[start:end]:
                if entry.plane is Plane.CONTROL:
                    self._handshake_frame(entry)
            rest = self.entries[end:]
        start_seqs = dict(self.seqs)
        for entry in rest:
            if entry.plane is Plane.SENT:
                self._sent(entry)
            elif entry.plane is Plane.CONTROL:
                self._control(entry)
            elif entry.plane is Plane.DATA:
                self._data(entry)
            elif entry.plane is Plane.RPC:
                self._rpc(entry)
        tracks = {
            sid: Track(sid, tuple(items), start_seqs.get(sid, 0), tuple(self.rpc.get(sid, ())))
            for sid, items in self.items.items()
        }
        return ReplayScript(
            self.run_id, self.create, self.create_text, self.parallel, tuple(self.handshake), tracks
        )

    def _synthesize_created(self) -> None:
        session_id = next((e.session_id for e in self.entries if e.session_id), None)
        if session_id is None:
            raise StoreError(f"run {self.run_id} recorded no session to replay")
        self._open_track(session_id)
        created = types.SessionCreated(session_id, f"/backtest/{session_id}")
        self.handshake.append(codec.encode_response(created))

    def _handshake_frame(self, entry: Entry) -> None:
        try:
            seq_id, response = codec.decode_frame(entry.payload)
        except ProtocolError as exc:
            raise _decode_error(entry, exc) from None
        if entry.kind.startswith(EVENT_KIND_PREFIX):
            return  # a driver event before the reply: the raw frames carry it
        local = _local_endpoint(response)
        text = entry.text if local is response else codec.encode_response(local, seq_id)
        if isinstance(response, types.SessionEventV2):
            self._note_seq(response.session_id, response.seq_id)
            if _is_readiness(response.event):
                self.held.add(response.session_id)
        elif not self.parallel:
            if seq_id is not None:
                self._note_seq(self._main(), seq_id)
            if _is_readiness(response):
                self.held.add(self._main())
        self.handshake.append(text)

    def _note_seq(self, session_id: str, seq_id: int) -> None:
        self.seqs[session_id] = max(seq_id, self.seqs.get(session_id, 0))

    # -- after the handshake ---------------------------------------------------------------

    def _main(self) -> str:
        return next(iter(self.items))

    def _sent(self, entry: Entry) -> None:
        try:
            request = codec.decode_request(entry.payload)
        except ProtocolError as exc:
            raise _decode_error(entry, exc) from None
        if isinstance(request, types.AttachBacktestSession):
            self.attaching = True
            self.resume_pending = False  # a new connection: an unanswered resume is moot
            return
        if isinstance(request, types.ResumeAttachedSession):
            self.resume_pending = True
            return
        if isinstance(
            request,
            types.UnknownRequest
            | types.AttachParallelControlSessionV2
            | types.CreateBacktestSessionRequest,
        ):
            return
        if self.parallel and isinstance(
            request,
            types.ContinueSessionRequestV1
            | types.ContinueToSessionRequestV1
            | types.CloseSessionRequestV1,
        ):
            route = request.session_id
            if route not in self.items:
                return  # addressed to no sub-session of this run
        elif self.parallel:
            return  # single-session requests do not exist on a parallel control connection
        else:
            route = self._main()
        if not isinstance(request, types.CloseBacktestSession | types.CloseSessionRequestV1):
            self.held.discard(route)  # a continue was written: readiness is spent
        self.steps[route] += 1
        self.items[route].append(Expect(request, entry.text, self.steps[route]))
        self.last_route = route

    def _control(self, entry: Entry) -> None:
        try:
            seq_id, response = codec.decode_frame(entry.payload)
        except ProtocolError as exc:
            raise _decode_error(entry, exc) from None
        if isinstance(
            response,
            types.SessionAttached
            | types.ParallelSessionAttachedV2
            | types.SessionCreated
            | types.SessionsCreatedV2
            | types.SessionsCreated,
        ):
            self.attaching = False
            return  # handshake replies of later connections (or a repeated create)
        raw = not entry.kind.startswith(EVENT_KIND_PREFIX)
        if not self.parallel:
            route = self._main()
            fate = self._fate(route, seq_id, response) if raw else _ACTED_ON
            if fate is _LEFT_OUT:
                return
            completes = fate is _ACTED_ON and isinstance(response, types.Completed)
            self._frame(route, SendFrame(entry.text, seq_id, completes))
            return
        if isinstance(response, types.SessionEventV2):
            route = response.session_id
            if route not in self.items:
                return
            fate = self._fate(route, response.seq_id, response.event) if raw else _ACTED_ON
            if fate is _LEFT_OUT:
                return
            completes = fate is _ACTED_ON and isinstance(response.event, types.Completed)
            self._frame(route, SendFrame(entry.text, response.seq_id, completes))
            return
        event = _as_session_event(response)
        owner = entry.session_id
        if entry.kind.startswith(EVENT_KIND_PREFIX) and owner in self.items and event is not None:
            # A driver event of a sub-session: number it as the server would have.
            seq = self.seqs.get(owner, 0) + 1
            self.seqs[owner] = seq
            wrapped = types.SessionEventV2(owner, seq, event)
            completes = isinstance(event, types.Completed)
            self._frame(owner, SendFrame(codec.encode_response(wrapped), seq, completes))
            return
        # A top-level frame (an error reply, ...): it answers the latest request.
        target = owner if owner in self.items else self.last_route
        self._frame(target or self._main(), SendFrame(entry.text, None, False))

    def _fate(
        self, route: str, seq_id: int | None, response: types.BacktestResponse | types.SessionEvent
    ) -> _Fate:
        """What the recorded client did with a raw frame, following its core's rules."""
        if seq_id is None:
            if self.attaching and isinstance(response, types.Error):
                return _LEFT_OUT  # the reply to an attach
            if self.resume_pending and isinstance(
                response, types.Success | types.Error | types.UnknownResponse
            ):
                self.resume_pending = False
                return _LEFT_OUT  # the reply to a resume
        elif seq_id <= self.seqs.get(route, -1):
            return _DUPLICATE
        else:
            self._note_seq(route, seq_id)
        if _is_readiness(response):
            if route in self.held:
                return _LEFT_OUT  # re-announced while the driver still held one
            self.held.add(route)
        return _ACTED_ON

    def _frame(self, route: str, frame: SendFrame) -> None:
        items = self.items[route]
        if frame.completes and route not in self.completes_at:
            self.completes_at[route] = len(items)
        items.append(frame)

    def _session_route(self, entry: Entry) -> str | None:
        """The route of a session-bound entry; ``None`` for a sub-session the run never made."""
        if not self.parallel:
            return self._main()
        if entry.session_id not in self.items:
            return None
        return entry.session_id

    def _rpc(self, entry: Entry) -> None:
        route = self._session_route(entry)
        if route is None:
            return
        self.rpc.setdefault(route, []).append(_rpc_call(entry))

    def _data(self, entry: Entry) -> None:
        route = self._session_route(entry)
        if route is None:
            return
        try:
            message = rpc.decode_rpc(entry.payload)
        except ProtocolError as exc:
            raise _decode_error(entry, exc) from None
        if isinstance(message, rpc.AccountDiffNotification):
            kind = rpc.ACCOUNT_DIFF_NOTIFICATION
        elif isinstance(message, rpc.TransactionNotification):
            kind = rpc.TRANSACTION_NOTIFICATION
        elif isinstance(message, rpc.LogsNotification):
            kind = rpc.LOGS_NOTIFICATION
        else:
            return
        item = DataItem(kind, entry.topic, message, entry.text)
        at = self.completes_at.get(route)
        if at is None:
            self.items[route].append(item)
        else:
            # Recorded while the client drained its subscriptions after ``completed``.
            self.items[route].insert(at, item)
            self.completes_at[route] = at + 1


def _rpc_call(entry: Entry) -> RpcCall:
    try:
        record = orjson.loads(entry.payload)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(entry, exc) from None
    fields = cast("dict[str, Any]", record) if isinstance(record, dict) else {}
    if not isinstance(fields.get("method"), str):
        raise _decode_error(entry, ValueError("not a recorded rpc call"))
    answer = {k: fields[k] for k in ("result", "error") if k in fields}
    if len(answer) != 1:
        raise _decode_error(entry, ValueError("a recorded rpc call needs a result or an error"))
    return RpcCall(
        fields["method"],
        orjson.dumps(fields.get("params")).decode(),
        orjson.dumps(answer).decode(),
    )


def _as_session_event(response: types.BacktestResponse) -> types.SessionEvent | None:
    if isinstance(
        response,
        types.ReadyForContinue
        | types.SlotNotification
        | types.Paused
        | types.DiscoveryBatch
        | types.Error
        | types.Success
        | types.Completed
        | types.Status,
    ):
        return response
    return None


def build_script(manifest: RunManifest, entries: Iterable[Entry]) -> ReplayScript:
    """The replay script of a recorded run.

    Raises:
        StoreError: the run has no create, no handshake reply (parallel), or an entry that
            cannot be decoded.
    """
    return _Builder(manifest, list(entries)).build()
