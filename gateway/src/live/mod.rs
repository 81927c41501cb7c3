//! Live sessions: the session hub. Who is in each session now, their SFU peers and tracks, and
//! what each participant's `sessionEvents` subscription carries.
//!
//! One [`Live`] per gateway. Each session is a pure state machine ([`core::SessionCore`]) behind
//! its own lock; the hub feeds it commands (from GraphQL and from the SFU's events) and carries
//! out what comes back:
//!
//! - room events (who joined, tracks, roles, the speaker, the end) get the session's next
//!   sequence number and go into a bounded ring ([`log::RoomLog`]); every subscriber reads on
//!   from its own position. A subscriber that resumes (`since`) from a number the ring still
//!   holds gets exactly what it missed; any other starts from a [`Delivery::Snapshot`], and one
//!   that falls behind the ring gets a snapshot saying so ([`SnapshotReason::Lagged`]), never a
//!   silent gap;
//! - directed events (a participant's server offer, layer changes, removal) go into that
//!   participant's own bounded mailbox ([`feed::Mailbox`]), which no room traffic can fill, where
//!   a newer offer replaces an undelivered older one;
//! - SFU actions (drop a peer, set its right to publish, close the room) run after the session's
//!   lock is released.
//!
//! A participant is a row of the `participants` table (its id is the participant id clients
//! see) plus, while connected, an SFU peer in the session's room. A participant whose connection
//! drops stays a participant for [`GRACE`]: coming back within it keeps its id and role, and its
//! tracks are published again by its new connection.
//!
//! Locks: the map of sessions and the peer index each have a small lock held for a lookup or an
//! insert only; each session has its own. None is held across an await, and nothing calls the
//! SFU under any of them. When two are held, the order is: a session, then the peer index
//! (attaching a peer), then the record of closed sessions' last numbers (always innermost); the
//! map of sessions is never held while a session is locked.

pub mod core;
pub mod feed;
pub mod interaction;
pub mod log;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sfu::{CloseReason, PeerId, Sfu, SfuEvent, TrackKey};
use tokio::sync::{Notify, watch};

use crate::roles::Role;

use self::core::Output;
pub use self::core::{
    Command, Departure, Directed, GRACE, Hand, HandLoweredReason, HostMute, ParticipantInfo,
    Refused, RoomEvent, SCREEN_TRACKS, SessionCore, SessionState, TrackInfo, TrackSource,
};
use self::feed::{MAILBOX_CAPACITY, Mailbox};
use self::log::{ROOM_LOG_CAPACITY, Read, RoomLog};

/// Server offers kept for peers not attached to a participant yet (the SFU may offer before the
/// join returns); beyond, the oldest is dropped.
const MAX_EARLY_OFFERS: usize = 1024;

/// Room events handed to a subscriber at once (the session's lock is held while they are copied).
const READ_BATCH: usize = 256;

/// The SFU room of a session.
pub fn room_of(session_id: i64) -> String {
    format!("session-{session_id}")
}

/// Why a subscriber gets a snapshot instead of the events it would read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// A new subscription without `since`.
    First,
    /// `since` was given but the session's log no longer holds (or never held) what follows it.
    ResumeUnavailable,
    /// The subscriber fell behind the log: the events it had not read yet are gone.
    Lagged,
}

impl std::fmt::Display for SnapshotReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotReason::First => "first",
            SnapshotReason::ResumeUnavailable => "resume unavailable",
            SnapshotReason::Lagged => "lagged",
        })
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Everything present now, up to and including room event `seq`: replace what you knew.
    Snapshot {
        reason: SnapshotReason,
        seq: u64,
        state: SessionState,
    },
    /// The room event numbered `seq`.
    Room { seq: u64, event: RoomEvent },
    /// An event for this participant only.
    Direct(Directed),
}

/// Counters of the hub, for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    /// Room events numbered, in all sessions.
    room_events: AtomicU64,
    /// Snapshots sent to subscribers that fell behind the log.
    lagged_resyncs: AtomicU64,
    /// Resumptions (`since`) the log could not serve.
    resumes_unavailable: AtomicU64,
    /// Resumptions served from the log.
    resumes: AtomicU64,
    /// Undelivered directed events replaced by newer ones (mostly server offers).
    directed_superseded: AtomicU64,
    /// Directed events dropped from a full mailbox (layer changes only).
    directed_dropped: AtomicU64,
}

/// A reading of the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sessions: u64,
    pub room_events: u64,
    pub lagged_resyncs: u64,
    pub resumes: u64,
    pub resumes_unavailable: u64,
    pub directed_superseded: u64,
    pub directed_dropped: u64,
}

/// One participant's directed lane.
struct Feed {
    mailbox: Mailbox,
    /// The subscription that takes from the mailbox: the newest one (a reconnecting client's
    /// new subscription takes over from its old one, which gets room events only).
    owner: u64,
    /// Wakes the owner.
    wake: Arc<Notify>,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            mailbox: Mailbox::new(MAILBOX_CAPACITY),
            owner: 0,
            wake: Arc::new(Notify::new()),
        }
    }
}

/// The state of a session behind its lock.
struct Session {
    core: SessionCore,
    log: RoomLog<RoomEvent>,
    /// Directed lanes by participant.
    feeds: HashMap<i64, Feed>,
    /// Subscriptions ever made here (numbers mailbox owners).
    subscriptions: u64,
}

/// A session and what wakes its subscribers.
struct SessionCell {
    /// A std mutex: held to apply a command or copy events out, never across an await.
    state: Mutex<Session>,
    /// The newest room event's number; bumped when the session closes too.
    head: watch::Sender<u64>,
    /// The session is gone from the registry (ended, or the last participant left): nothing
    /// more is applied to it, and its subscribers end once they have read everything.
    closed: AtomicBool,
}

impl SessionCell {
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SFU peers of participants, and offers that came before their peer was attached.
#[derive(Default)]
struct PeerIndex {
    /// SFU peer -> (session, participant).
    peers: HashMap<PeerId, (i64, i64)>,
    /// Server offers for peers not attached yet (the SFU may offer before `join` returns).
    early_offers: HashMap<PeerId, String>,
}

struct Hub {
    sfu: Sfu,
    /// Live sessions by id. A std mutex: held for a lookup or insert only.
    sessions: Mutex<HashMap<i64, Arc<SessionCell>>>,
    /// The last room event number of sessions that closed: a later incarnation of the same
    /// session numbers on after it, so that a client's `since` from the earlier one is never
    /// taken for this one's (one entry per session ever closed on this node: 16 bytes).
    closed_heads: Mutex<HashMap<i64, u64>>,
    /// A std mutex: held for a lookup or update only.
    index: Mutex<PeerIndex>,
    counters: Counters,
}

/// The registry of live sessions. Cheap to clone.
#[derive(Clone)]
pub struct Live(Arc<Hub>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// SFU actions to run once the session's lock is released.
#[derive(Default)]
#[must_use]
struct Effects {
    release: Vec<PeerId>,
    forget: Vec<PeerId>,
    set_publish: Vec<(PeerId, bool)>,
    pause: Vec<(PeerId, String, bool)>,
    departed: Vec<Departure>,
    /// The session closed with this command.
    closed: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.release.extend(other.release);
        self.forget.extend(other.forget);
        self.set_publish.extend(other.set_publish);
        self.pause.extend(other.pause);
        self.departed.extend(other.departed);
        self.closed |= other.closed;
    }
}

impl Live {
    pub fn new(sfu: Sfu) -> Live {
        Live(Arc::new(Hub {
            sfu,
            sessions: Mutex::new(HashMap::new()),
            index: Mutex::new(PeerIndex::default()),
            closed_heads: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }))
    }

    fn cell(&self, session_id: i64) -> Option<Arc<SessionCell>> {
        lock(&self.0.sessions)
            .get(&session_id)
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .cloned()
    }

    /// The session's cell, made when there is none (or the one there has closed).
    fn cell_or_new(&self, session_id: i64) -> Arc<SessionCell> {
        let mut sessions = lock(&self.0.sessions);
        if let Some(c) = sessions.get(&session_id)
            && !c.closed.load(Ordering::Acquire)
        {
            return Arc::clone(c);
        }
        // Numbers of different incarnations of a session never overlap: a client's `since`
        // from an earlier one is not taken for this one's.
        let base = lock(&self.0.closed_heads)
            .get(&session_id)
            .map_or(0, |head| head + 1);
        let cell = Arc::new(SessionCell {
            state: Mutex::new(Session {
                core: SessionCore::new(),
                log: RoomLog::new(ROOM_LOG_CAPACITY, base),
                feeds: HashMap::new(),
                subscriptions: 0,
            }),
            head: watch::channel(base).0,
            closed: AtomicBool::new(false),
        });
        sessions.insert(session_id, Arc::clone(&cell));
        cell
    }

    /// Applies a command to a session and carries out what follows. `None` when there is no
    /// such session.
    fn apply(&self, session_id: i64, command: Command) -> Option<Result<Effects, Refused>> {
        let cell = self.cell(session_id)?;
        let result = {
            let mut session = cell.lock();
            if cell.closed.load(Ordering::Acquire) {
                // Closed between the lookup and the lock.
                return None;
            }
            self.apply_locked(session_id, &cell, &mut session, command, Instant::now())
        };
        if let Ok(effects) = &result {
            self.carry_out(session_id, &cell, effects);
        }
        Some(result)
    }

    fn apply_locked(
        &self,
        session_id: i64,
        cell: &SessionCell,
        session: &mut Session,
        command: Command,
        now: Instant,
    ) -> Result<Effects, Refused> {
        let outputs = session.core.apply(command, now)?;
        let mut effects = Effects::default();
        let mut appended = false;
        for output in outputs {
            match output {
                Output::Room(event) => {
                    if let RoomEvent::ParticipantLeft { participant_id } = &event
                        && !session
                            .feeds
                            .get(participant_id)
                            .is_some_and(|f| f.mailbox.holds_removal())
                    {
                        // A removed participant's mailbox stays until its removal is read.
                        session.feeds.remove(participant_id);
                    }
                    session.log.append(event);
                    appended = true;
                    self.0.counters.room_events.fetch_add(1, Ordering::Relaxed);
                }
                Output::Direct { to, event } => {
                    let feed = session.feeds.entry(to).or_insert_with(Feed::new);
                    let pushed = feed.mailbox.push(event);
                    if pushed.superseded {
                        self.0
                            .counters
                            .directed_superseded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if pushed.dropped {
                        self.0
                            .counters
                            .directed_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            participant = to,
                            "directed mailbox full: a layer change dropped"
                        );
                    }
                    feed.wake.notify_one();
                }
                Output::SetPublish { peer, allowed } => effects.set_publish.push((peer, allowed)),
                Output::Release(peer) => effects.release.push(peer),
                Output::Forget(peer) => effects.forget.push(peer),
                Output::Expired { .. } => {}
                Output::PauseProducer {
                    peer,
                    track,
                    paused,
                } => effects.pause.push((peer, track, paused)),
                Output::Departed(d) => effects.departed.push(d),
            }
        }
        if session.core.is_ended() || session.core.is_empty() {
            // The last one out, or the end: the session's entry goes (the next joiner makes a
            // new one). Its subscribers read what is left, then end. Its last number is kept
            // before it is marked closed, so that the next incarnation numbers on after it.
            // (`closed_heads` is only ever locked innermost.)
            lock(&self.0.closed_heads).insert(session_id, session.log.head());
            cell.closed.store(true, Ordering::Release);
            effects.closed = true;
            session.feeds.clear();
        }
        if appended || effects.closed {
            cell.head.send_replace(session.log.head());
        }
        Ok(effects)
    }

    /// Runs what a command left for after the session's lock.
    fn carry_out(&self, session_id: i64, cell: &Arc<SessionCell>, effects: &Effects) {
        if effects.closed {
            let mut sessions = lock(&self.0.sessions);
            if sessions
                .get(&session_id)
                .is_some_and(|c| Arc::ptr_eq(c, cell))
            {
                sessions.remove(&session_id);
            }
        }
        if !effects.release.is_empty() || !effects.forget.is_empty() {
            let mut index = lock(&self.0.index);
            for peer in effects.release.iter().chain(&effects.forget) {
                index.peers.remove(peer);
            }
        }
        for &peer in &effects.release {
            self.0.sfu.leave(peer);
        }
        for &(peer, allowed) in &effects.set_publish {
            self.0.sfu.set_publish(peer, allowed);
        }
        for (peer, track, paused) in &effects.pause {
            self.0.sfu.pause_producer(*peer, track, *paused);
        }
    }

    /// Applies a command (a hand, the stage, moderation) to a live session. Returns the visits
    /// that ended with it (to record).
    pub fn command(&self, session_id: i64, command: Command) -> Result<Vec<Departure>, Refused> {
        self.apply(session_id, command)
            .unwrap_or(Err(Refused::NoSession))
            .map(|e| e.departed)
    }

    /// The participant's talk time so far, if present.
    pub fn talk_time(&self, session_id: i64, participant_id: i64) -> Option<std::time::Duration> {
        self.read(session_id, |s| {
            s.core.talk_time(participant_id, Instant::now())
        })?
    }

    /// Reads a session under its lock.
    fn read<R>(&self, session_id: i64, f: impl FnOnce(&Session) -> R) -> Option<R> {
        let cell = self.cell(session_id)?;
        let session = cell.lock();
        Some(f(&session))
    }

    /// Adds (or finds again) a participant. Returns true when it is new to the session; refused
    /// for a user removed from it, or someone new to a locked session (but hosts and co-hosts).
    pub fn join(&self, session_id: i64, info: ParticipantInfo) -> Result<bool, Refused> {
        loop {
            let cell = self.cell_or_new(session_id);
            let (new, result) = {
                let mut session = cell.lock();
                if cell.closed.load(Ordering::Acquire) {
                    continue;
                }
                let new = session.core.participant(info.id).is_none();
                (
                    new,
                    self.apply_locked(
                        session_id,
                        &cell,
                        &mut session,
                        Command::Join(info.clone()),
                        Instant::now(),
                    ),
                )
            };
            return match result {
                Ok(effects) => {
                    self.carry_out(session_id, &cell, &effects);
                    Ok(new)
                }
                Err(e) => {
                    let emptied = {
                        let session = cell.lock();
                        let empty = session.core.is_empty() && !cell.closed.load(Ordering::Acquire);
                        if empty {
                            // A refused first joiner leaves no empty session behind.
                            lock(&self.0.closed_heads).insert(session_id, session.log.head());
                            cell.closed.store(true, Ordering::Release);
                        }
                        empty
                    };
                    if emptied {
                        let mut sessions = lock(&self.0.sessions);
                        if sessions
                            .get(&session_id)
                            .is_some_and(|c| Arc::ptr_eq(c, &cell))
                        {
                            sessions.remove(&session_id);
                        }
                    }
                    Err(e)
                }
            };
        }
    }

    /// The participant of `user_id` present in the session, if any (a rejoin finds it).
    pub fn participant_of(&self, session_id: i64, user_id: i64) -> Option<ParticipantInfo> {
        self.read(session_id, |s| s.core.participant_of(user_id).cloned())?
    }

    /// The role of `user_id` in the session changed: their participant (if present) takes it,
    /// everyone is told, and their SFU peer may publish or not by it (revoking unpublishes its
    /// tracks at once; the SFU's events tell everyone).
    pub fn set_role(&self, session_id: i64, user_id: i64, role: Role) {
        let _ = self.apply(session_id, Command::SetRole { user_id, role });
    }

    /// The participant `id` of the session, if present.
    pub fn participant(&self, session_id: i64, id: i64) -> Option<ParticipantInfo> {
        self.read(session_id, |s| s.core.participant(id).cloned())?
    }

    /// Everyone present and every track now.
    pub fn snapshot(&self, session_id: i64) -> Option<SessionState> {
        self.read(session_id, |s| s.core.state())
    }

    /// The participant's SFU peer, if connected.
    pub fn peer_of(&self, session_id: i64, participant_id: i64) -> Option<PeerId> {
        self.read(session_id, |s| s.core.peer_of(participant_id))?
    }

    /// Disconnects the participant's SFU peer, if any (before a new connection replaces it): its
    /// tracks are unpublished for everyone.
    pub fn detach(&self, session_id: i64, participant_id: i64) {
        let _ = self.apply(session_id, Command::Detach { participant_id });
    }

    /// Connects the participant's (new) SFU peer; an earlier peer of it is left. A server offer
    /// that came for the peer before goes to the participant now.
    pub fn attach(&self, session_id: i64, participant_id: i64, peer: PeerId) {
        let cell = self.cell(session_id);
        let result = match &cell {
            None => Err(Refused::UnknownParticipant),
            Some(cell) => {
                let mut session = cell.lock();
                if cell.closed.load(Ordering::Acquire) {
                    Err(Refused::Ended)
                } else {
                    // The index entry and the early offer change under the session's lock: an
                    // offer the SFU sends from now on finds the peer and waits for this lock, so
                    // it lands after the early one (and replaces it), never before.
                    let early = {
                        let mut index = lock(&self.0.index);
                        index.peers.insert(peer, (session_id, participant_id));
                        index.early_offers.remove(&peer)
                    };
                    let now = Instant::now();
                    let command = Command::Attach {
                        participant_id,
                        peer,
                    };
                    self.apply_locked(session_id, cell, &mut session, command, now)
                        .map(|mut effects| {
                            if let Some(sdp) = early {
                                let offer = Command::ServerOffer {
                                    participant_id,
                                    sdp,
                                };
                                if let Ok(more) =
                                    self.apply_locked(session_id, cell, &mut session, offer, now)
                                {
                                    effects.merge(more);
                                }
                            }
                            effects
                        })
                }
            }
        };
        match (result, cell) {
            (Ok(effects), Some(cell)) => self.carry_out(session_id, &cell, &effects),
            _ => {
                // No such participant (it left meanwhile): nobody owns the peer.
                lock(&self.0.index).peers.remove(&peer);
                self.0.sfu.leave(peer);
            }
        }
    }

    /// Marks a track muted or not, for everyone. Refused when the participant has no such
    /// track, or unmutes a kind a moderator muted.
    pub fn set_muted(
        &self,
        session_id: i64,
        participant_id: i64,
        track_id: &str,
        muted: bool,
    ) -> Result<(), Refused> {
        let command = Command::SetMuted {
            participant_id,
            track_id: track_id.to_owned(),
            muted,
        };
        self.command(session_id, command).map(drop)
    }

    /// Announces that the participant's tracks of these names (its browser's track ids) carry a
    /// shared screen and its sound. Refused for a participant who may not publish.
    pub fn share_screen(
        &self,
        session_id: i64,
        participant_id: i64,
        tracks: Vec<String>,
    ) -> Result<(), Refused> {
        let command = Command::ShareScreen {
            participant_id,
            tracks,
        };
        self.command(session_id, command).map(drop)
    }

    /// The publisher of a track of the session: (its SFU peer, its track name).
    pub fn track_source(&self, session_id: i64, track_id: &str) -> Option<(PeerId, String)> {
        self.read(session_id, |s| {
            let (t, peer) = s.core.track(track_id)?;
            let key = TrackKey::from_msid_track(&t.id)?;
            (peer == Some(key.peer)).then(|| (key.peer, key.track.to_string()))
        })?
    }

    /// Tells everyone in the session about a stored chat, Q&A or poll change, on the room lane
    /// (numbered, resumable; never the directed mailbox). `Err` when the participant is not in
    /// the session (anymore) or it ended; the change stays stored either way.
    pub fn interaction(
        &self,
        session_id: i64,
        participant_id: i64,
        change: interaction::Interaction,
    ) -> Result<(), Refused> {
        let command = Command::Interaction {
            participant_id,
            change: Arc::new(change),
        };
        match self.apply(session_id, command) {
            Some(result) => result.map(drop),
            None => Err(Refused::Ended),
        }
    }

    /// The participant leaves: its peer goes, everyone is told. Returns its visit when it was
    /// present.
    pub fn leave(&self, session_id: i64, participant_id: i64) -> Option<Departure> {
        self.command(session_id, Command::Leave { participant_id })
            .ok()?
            .into_iter()
            .find(|d| d.participant_id == participant_id)
    }

    /// The session ended: everyone is told and disconnected. Returns the visits that ended.
    pub fn end(&self, session_id: i64) -> Vec<Departure> {
        let departed = self.command(session_id, Command::End).unwrap_or_default();
        self.0.sfu.close_room(&room_of(session_id));
        departed
    }

    /// Participants whose connection dropped [`GRACE`] ago or more at `now` leave. Returns their
    /// visits by session.
    pub fn expire(&self, now: Instant) -> Vec<(i64, Departure)> {
        let cells: Vec<(i64, Arc<SessionCell>)> = lock(&self.0.sessions)
            .iter()
            .map(|(id, c)| (*id, Arc::clone(c)))
            .collect();
        let mut gone = Vec::new();
        for (session_id, cell) in cells {
            let result = {
                let mut session = cell.lock();
                if cell.closed.load(Ordering::Acquire) {
                    continue;
                }
                self.apply_locked(session_id, &cell, &mut session, Command::Expire, now)
            };
            if let Ok(effects) = result {
                self.carry_out(session_id, &cell, &effects);
                gone.extend(effects.departed.iter().map(|d| (session_id, *d)));
            }
        }
        gone
    }

    /// Follows a session as one participant: from `since` (the last room event number it read)
    /// when the log still holds what follows, else from a snapshot. `None`: no such session.
    pub fn subscribe(
        &self,
        session_id: i64,
        participant_id: i64,
        since: Option<u64>,
    ) -> Option<Subscriber> {
        let cell = self.cell(session_id)?;
        let (owner, wake, after, due, head) = {
            let mut session = cell.lock();
            if cell.closed.load(Ordering::Acquire) {
                return None;
            }
            session.subscriptions += 1;
            let owner = session.subscriptions;
            let feed = session
                .feeds
                .entry(participant_id)
                .or_insert_with(Feed::new);
            feed.owner = owner;
            // A new waker: an older subscription must not take this one's wake-ups.
            feed.wake = Arc::new(Notify::new());
            if !feed.mailbox.is_empty() {
                feed.wake.notify_one();
            }
            let wake = Arc::clone(&feed.wake);
            let head = session.log.head();
            let (after, due) = match since {
                None => (head, Some(SnapshotReason::First)),
                Some(n) if session.log.holds_after(n) => {
                    self.0.counters.resumes.fetch_add(1, Ordering::Relaxed);
                    (n, None)
                }
                Some(_) => {
                    self.0
                        .counters
                        .resumes_unavailable
                        .fetch_add(1, Ordering::Relaxed);
                    (head, Some(SnapshotReason::ResumeUnavailable))
                }
            };
            (owner, wake, after, due, cell.head.subscribe())
        };
        Some(Subscriber {
            live: self.clone(),
            cell,
            participant_id,
            owner,
            wake,
            head,
            after,
            due,
            done: false,
        })
    }

    /// The hub's counters now.
    pub fn stats(&self) -> HubStats {
        let c = &self.0.counters;
        HubStats {
            sessions: lock(&self.0.sessions).len() as u64,
            room_events: c.room_events.load(Ordering::Relaxed),
            lagged_resyncs: c.lagged_resyncs.load(Ordering::Relaxed),
            resumes: c.resumes.load(Ordering::Relaxed),
            resumes_unavailable: c.resumes_unavailable.load(Ordering::Relaxed),
            directed_superseded: c.directed_superseded.load(Ordering::Relaxed),
            directed_dropped: c.directed_dropped.load(Ordering::Relaxed),
        }
    }

    /// The session and participant of an SFU peer.
    fn locate(&self, peer: PeerId) -> Option<(i64, i64)> {
        lock(&self.0.index).peers.get(&peer).copied()
    }

    /// Applies one SFU event to the sessions.
    pub fn on_sfu_event(&self, event: SfuEvent) {
        match event {
            SfuEvent::Offer { peer, sdp } => match self.locate(peer) {
                Some((sid, pid)) => {
                    let command = Command::ServerOffer {
                        participant_id: pid,
                        sdp,
                    };
                    let _ = self.apply(sid, command);
                }
                None => {
                    let mut index = lock(&self.0.index);
                    // Bounded: offers for peers never attached (a join that failed after the
                    // SFU answered) must not pile up; the oldest goes first.
                    if index.early_offers.len() >= MAX_EARLY_OFFERS
                        && let Some(oldest) = index.early_offers.keys().min().copied()
                    {
                        index.early_offers.remove(&oldest);
                        tracing::warn!(peer = %oldest, "early server offer dropped: too many waiting");
                    }
                    index.early_offers.insert(peer, sdp);
                }
            },
            SfuEvent::TrackPublished { peer, track, video } => {
                if let Some((sid, pid)) = self.locate(peer) {
                    let command = Command::TrackPublished {
                        participant_id: pid,
                        peer,
                        track,
                        video,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::TrackUnpublished { peer, track } => {
                if let Some((sid, pid)) = self.locate(peer) {
                    let command = Command::TrackUnpublished {
                        participant_id: pid,
                        peer,
                        track,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::PeerConnected { peer } => {
                if let Some((sid, pid)) = self.locate(peer) {
                    let command = Command::PeerConnected {
                        participant_id: pid,
                        peer,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::PeerDisconnected { peer } => {
                // The participant stays for the grace period: a new connection may come. The
                // SFU handle forgets the peer too.
                self.0.sfu.leave(peer);
                let located = {
                    let mut index = lock(&self.0.index);
                    index.early_offers.remove(&peer);
                    index.peers.remove(&peer)
                };
                if let Some((sid, pid)) = located {
                    let command = Command::PeerDisconnected {
                        participant_id: pid,
                        peer,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::ActiveSpeaker { room, peer } => {
                if let Some((sid, pid)) = self.locate(peer)
                    && room.as_str() == room_of(sid)
                {
                    let command = Command::ActiveSpeaker {
                        participant_id: pid,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::LayerChanged {
                subscriber,
                source,
                track,
                layer,
            } => {
                if let Some((sid, pid)) = self.locate(subscriber) {
                    let command = Command::LayerChanged {
                        participant_id: pid,
                        track_id: TrackKey::new(source, track).msid_track(),
                        layer,
                    };
                    let _ = self.apply(sid, command);
                }
            }
            SfuEvent::RoomClosed { room, reason } => {
                if reason == CloseReason::Requested {
                    return;
                }
                let sid = lock(&self.0.sessions)
                    .keys()
                    .copied()
                    .find(|sid| room_of(*sid) == room.as_str());
                if let Some(sid) = sid {
                    let command = Command::RoomClosed {
                        reason: format!("the media server closed the room: {reason}"),
                    };
                    let _ = self.apply(sid, command);
                }
            }
            _ => {}
        }
    }
}

/// One participant's view of a session: its room events in order (or snapshots where it cannot
/// have them) and its own directed events. Dropping it unsubscribes.
pub struct Subscriber {
    live: Live,
    cell: Arc<SessionCell>,
    participant_id: i64,
    /// This subscription's number: it takes from the mailbox while it is the newest.
    owner: u64,
    /// Wakes it for directed events.
    wake: Arc<Notify>,
    /// Wakes it for room events (and the session's close).
    head: watch::Receiver<u64>,
    /// The number of the last room event it was given (or its snapshot was up to).
    after: u64,
    /// A snapshot it is due before anything else from the room.
    due: Option<SnapshotReason>,
    /// It was given the session's end or its removal, or the session closed and it read all.
    done: bool,
}

impl Subscriber {
    /// What is there for it now, without waiting: directed events first (signaling goes before
    /// room traffic), then room events. Empty when there is nothing new.
    pub fn poll(&mut self) -> Vec<Delivery> {
        if self.done {
            return Vec::new();
        }
        self.head.borrow_and_update();
        let mut out = Vec::new();
        let mut session = self.cell.lock();
        if let Some(feed) = session.feeds.get_mut(&self.participant_id)
            && feed.owner == self.owner
        {
            for event in feed.mailbox.take() {
                let last = matches!(event, Directed::Removed { .. });
                out.push(Delivery::Direct(event));
                if last {
                    self.done = true;
                    if session.core.participant(self.participant_id).is_none() {
                        // Removed and gone: its mailbox is read.
                        session.feeds.remove(&self.participant_id);
                    }
                    return out;
                }
            }
        }
        let reason = match self.due.take() {
            Some(reason) => Some(reason),
            None => match session.log.read_after(self.after, READ_BATCH) {
                Read::Events(events) => {
                    for (seq, event) in events {
                        self.after = seq;
                        let last = matches!(event, RoomEvent::SessionEnded);
                        out.push(Delivery::Room { seq, event });
                        if last {
                            self.done = true;
                            return out;
                        }
                    }
                    None
                }
                Read::Gap => {
                    self.live
                        .0
                        .counters
                        .lagged_resyncs
                        .fetch_add(1, Ordering::Relaxed);
                    Some(SnapshotReason::Lagged)
                }
            },
        };
        if let Some(reason) = reason {
            self.after = session.log.head();
            out.push(Delivery::Snapshot {
                reason,
                seq: self.after,
                state: session.core.state(),
            });
        }
        if out.is_empty() && self.cell.closed.load(Ordering::Acquire) {
            self.done = true;
        }
        drop(session);
        out
    }

    /// The next deliveries, waiting for them; `None` once the subscription is over (the session
    /// ended or closed, or this participant was removed).
    pub async fn next(&mut self) -> Option<Vec<Delivery>> {
        loop {
            let batch = self.poll();
            if !batch.is_empty() {
                return Some(batch);
            }
            if self.done {
                return None;
            }
            tokio::select! {
                changed = self.head.changed() => {
                    if changed.is_err() {
                        // Cannot happen while we hold the cell; end rather than spin.
                        return None;
                    }
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    /// The number of the last room event given (or the snapshot's): what to resume from.
    pub fn last_seq(&self) -> u64 {
        self.after
    }
}

#[cfg(test)]
mod tests;
