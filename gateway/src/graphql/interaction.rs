//! Chat, Q&A and polls in a live session: stored first, then told to everyone on the session's
//! room lane (`sessionEvents`), never on a participant's signaling mailbox.
//!
//! Every mutation commits its row before it returns (the acknowledgement means the write is in
//! the database) and only then hands the new state to the hub. Who may do what is
//! [`roles::allowed`]'s to say: everyone present chats, asks, upvotes and votes
//! ([`Action::Participate`]); hosts and co-hosts delete messages and answer, dismiss and reopen
//! questions ([`Action::ModerateInteraction`]) and run polls ([`Action::ManagePolls`]).
//!
//! What a caller sees of a question or a poll depends on them: an anonymous asker is hidden from
//! other attendees but not from hosts and co-hosts; a poll's results are hidden from attendees
//! until a host shares them. The same [`Viewer`] decides it for query answers, mutation answers
//! and subscription events.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use schema::models::{chat_message, poll, question};

use super::errors::{self, ApiError};
use super::signaling::me;
use super::state;
use super::types::time;
use crate::auth::Scope;
use crate::live::interaction::{ChatLine, Interaction, PollInfo, QuestionInfo, QuestionState};
use crate::live::{ParticipantInfo, Refused};
use crate::roles::{self, Action, Role};

/// Longest chat message, in characters.
pub const MAX_CHAT: usize = 2000;
/// Longest question, in characters.
pub const MAX_QUESTION: usize = 1000;
/// Longest written answer, in characters.
pub const MAX_ANSWER: usize = 2000;
/// Longest poll question and option, in characters.
pub const MAX_POLL_TEXT: usize = 300;
/// Options of a poll.
pub const MIN_POLL_OPTIONS: usize = 2;
pub const MAX_POLL_OPTIONS: usize = 10;
/// Largest page of chat history.
pub const MAX_CHAT_PAGE: i32 = 200;

#[derive(Default)]
pub struct InteractionQuery;

#[derive(Default)]
pub struct InteractionMutation;

/// Who is looking: decides what of a question or poll they see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: i64,
    pub role: Role,
}

impl Viewer {
    pub fn of(p: &ParticipantInfo) -> Viewer {
        Viewer {
            user_id: p.user_id,
            role: p.role,
        }
    }

    fn moderates(self) -> bool {
        roles::allowed(self.role, Action::ModerateInteraction)
    }

    fn sees_results(self) -> bool {
        roles::allowed(self.role, Action::ManagePolls)
    }
}

fn id(n: i64) -> ID {
    ID::from(n.to_string())
}

/// A chat message.
#[derive(SimpleObject, Clone)]
pub struct ChatMessage {
    pub id: ID,
    /// The author's user id.
    pub author_id: ID,
    pub author_name: String,
    pub body: String,
    pub sent_at: DateTime<Utc>,
}

impl From<&ChatLine> for ChatMessage {
    fn from(m: &ChatLine) -> ChatMessage {
        ChatMessage {
            id: id(m.id),
            author_id: id(m.user_id),
            author_name: m.author.clone(),
            body: m.body.clone(),
            sent_at: time(m.sent_at),
        }
    }
}

/// A page of chat history, oldest first.
#[derive(SimpleObject)]
pub struct ChatPage {
    pub messages: Vec<ChatMessage>,
    /// Older messages exist: ask again with `before: olderCursor`.
    pub has_older: bool,
    /// The cursor for the page before this one (the oldest message's id here).
    pub older_cursor: Option<ID>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "QuestionState")]
pub enum QuestionStateView {
    Open,
    Answered,
    Dismissed,
}

impl From<QuestionState> for QuestionStateView {
    fn from(s: QuestionState) -> QuestionStateView {
        match s {
            QuestionState::Open => QuestionStateView::Open,
            QuestionState::Answered => QuestionStateView::Answered,
            QuestionState::Dismissed => QuestionStateView::Dismissed,
        }
    }
}

/// A question of the session's Q&A, as the caller may see it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Question")]
pub struct QuestionView {
    pub id: ID,
    pub body: String,
    /// Asked without a name for other attendees (hosts and co-hosts still see who asked).
    pub anonymous: bool,
    /// Who asked: `null` when anonymous and the caller is an attendee.
    pub asker_id: Option<ID>,
    pub asker_name: Option<String>,
    /// The caller asked it.
    pub mine: bool,
    pub state: QuestionStateView,
    /// The written answer.
    pub answer: Option<String>,
    /// Answered aloud in the session rather than in writing.
    pub answered_live: bool,
    /// Upvotes.
    pub votes: i32,
    /// The caller upvoted it.
    pub upvoted_by_me: bool,
    pub asked_at: DateTime<Utc>,
}

impl QuestionView {
    pub fn of(q: &QuestionInfo, viewer: Viewer) -> QuestionView {
        let mine = q.user_id == viewer.user_id;
        let named = !q.anonymous || mine || viewer.moderates();
        QuestionView {
            id: id(q.id),
            body: q.body.clone(),
            anonymous: q.anonymous,
            asker_id: named.then(|| id(q.user_id)),
            asker_name: named.then(|| q.asker.clone()),
            mine,
            state: q.state.into(),
            answer: q.answer.clone(),
            answered_live: q.state == QuestionState::Answered && q.answer.is_none(),
            votes: i32::try_from(q.voters.len()).unwrap_or(i32::MAX),
            upvoted_by_me: q.voters.contains(&viewer.user_id),
            asked_at: time(q.asked_at),
        }
    }
}

/// A poll, as the caller may see it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Poll")]
pub struct PollView {
    pub id: ID,
    pub question: String,
    pub options: Vec<String>,
    /// Several options may be chosen.
    pub multiple_choice: bool,
    /// Votes are taken.
    pub open: bool,
    /// Everyone sees the results.
    pub results_shared: bool,
    /// The caller voted.
    pub voted: bool,
    /// The options the caller chose (indexes into `options`).
    pub my_choices: Vec<i32>,
    /// Votes per option: for hosts and co-hosts always, for everyone once shared; else `null`.
    pub results: Option<Vec<i32>>,
    /// How many voted (same visibility as `results`).
    pub voters: Option<i32>,
    pub created_at: DateTime<Utc>,
}

fn int(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl PollView {
    pub fn of(p: &PollInfo, viewer: Viewer) -> PollView {
        let mine = p.choices_of(viewer.user_id);
        let visible = p.results_shared || viewer.sees_results();
        PollView {
            id: id(p.id),
            question: p.question.clone(),
            options: p.options.clone(),
            multiple_choice: p.multiple_choice,
            open: p.open,
            results_shared: p.results_shared,
            voted: mine.is_some(),
            my_choices: mine
                .unwrap_or_default()
                .iter()
                .map(|&o| i32::try_from(o).unwrap_or(i32::MAX))
                .collect(),
            results: visible.then(|| {
                p.counts()
                    .into_iter()
                    .map(|c| i32::try_from(c).unwrap_or(i32::MAX))
                    .collect()
            }),
            voters: visible.then(|| int(p.ballots.len())),
            created_at: time(p.created_at),
        }
    }
}

/// A chat message was posted.
#[derive(SimpleObject, Clone)]
pub struct ChatMessagePosted {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub message: ChatMessage,
}

/// A host or co-host removed a chat message: remove it from what you show.
#[derive(SimpleObject, Clone)]
pub struct ChatMessageDeleted {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub message_id: ID,
}

/// A question was asked or changed (votes, answer, state): replace what you had of it.
#[derive(SimpleObject, Clone)]
pub struct QuestionUpdated {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub question: QuestionView,
}

/// A poll was created or changed (votes, closed, results shared): replace what you had of it.
#[derive(SimpleObject, Clone)]
pub struct PollUpdated {
    /// The room event's number in the session (resume after it with `sessionEvents(since:)`).
    pub seq: i64,
    pub poll: PollView,
}

/// The subscription event of a chat, Q&A or poll change, as `viewer` may see it.
pub fn event_item(
    seq: i64,
    change: &Interaction,
    viewer: Viewer,
) -> super::signaling::SessionEventItem {
    use super::signaling::SessionEventItem as Item;
    match change {
        Interaction::ChatPosted(m) => Item::ChatMessagePosted(ChatMessagePosted {
            seq,
            message: m.into(),
        }),
        Interaction::ChatDeleted { message_id } => Item::ChatMessageDeleted(ChatMessageDeleted {
            seq,
            message_id: id(*message_id),
        }),
        Interaction::Question(q) => Item::QuestionUpdated(QuestionUpdated {
            seq,
            question: QuestionView::of(q, viewer),
        }),
        Interaction::Poll(p) => Item::PollUpdated(PollUpdated {
            seq,
            poll: PollView::of(p, viewer),
        }),
    }
}

fn question_info(row: question::QuestionRow) -> QuestionInfo {
    let q = row.question;
    QuestionInfo {
        id: q.id,
        user_id: q.user_id,
        asker: row.asker_name,
        anonymous: q.anonymous,
        body: q.body,
        state: match q.state.as_str() {
            question::ANSWERED => QuestionState::Answered,
            question::DISMISSED => QuestionState::Dismissed,
            _ => QuestionState::Open,
        },
        answer: q.answer,
        voters: row.voters,
        asked_at: q.created_at,
    }
}

fn poll_info(row: poll::PollRow) -> PollInfo {
    let p = row.poll;
    PollInfo {
        id: p.id,
        // Written by `createPoll` from a list of strings; an unreadable value shows no options.
        options: serde_json::from_str(&p.options).unwrap_or_default(),
        question: p.question,
        multiple_choice: p.multiple_choice,
        open: p.state == poll::OPEN,
        results_shared: p.results_shared,
        ballots: row
            .ballots
            .into_iter()
            .map(|(u, c)| {
                (
                    u,
                    c.into_iter()
                        .filter_map(|o| u32::try_from(o).ok())
                        .collect(),
                )
            })
            .collect(),
        created_at: p.created_at,
    }
}

/// The caller's participant in the live session, allowed `action`.
fn present(
    ctx: &Context<'_>,
    session_id: &ID,
    action: Action,
    scope: Scope,
) -> Result<(i64, ParticipantInfo), ApiError> {
    let sid = errors::parse_id("sessionId", session_id)?;
    let me = me(ctx, sid, scope)?;
    if !roles::allowed(me.role, action) {
        return Err(ApiError::Forbidden(format!(
            "a {} may not do this in the session",
            me.role
        )));
    }
    Ok((sid, me))
}

/// Tells the session about a committed change. The change is stored whatever happens here: a
/// participant who left in the meantime only misses telling the others live.
fn tell(ctx: &Context<'_>, sid: i64, me: &ParticipantInfo, change: Interaction) {
    if let Err(e) = state(ctx).live.interaction(sid, me.id, change) {
        let e: Refused = e;
        tracing::debug!(session = sid, participant = me.id, error = %e, "change stored, not told live");
    }
}

/// Runs database work; a unique violation is `conflict`, other errors are internal.
async fn write<T, F>(ctx: &Context<'_>, conflict: &str, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut schema::Conn) -> Result<T, schema::TxError<ApiError>> + Send + 'static,
    T: Send + 'static,
{
    use diesel::result::{DatabaseErrorKind, Error};
    match state(ctx).db.transaction(f).await {
        Ok(result) => result,
        Err(schema::DbError::Query(Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _,
        ))) => Err(ApiError::Conflict(conflict.to_owned())),
        Err(e) => Err(e.into()),
    }
}

fn abort<T>(e: ApiError) -> Result<T, schema::TxError<ApiError>> {
    Err(schema::TxError::Abort(e))
}

/// The question `qid` of session `sid`, with its voters.
fn question_in(
    c: &mut schema::Conn,
    sid: i64,
    qid: i64,
) -> Result<question::QuestionRow, schema::TxError<ApiError>> {
    match question::row(c, qid)? {
        Some(row) if row.question.session_id == sid => Ok(row),
        _ => abort(ApiError::NotFound("question")),
    }
}

/// The poll `pid` of session `sid`.
fn poll_in(
    c: &mut schema::Conn,
    sid: i64,
    pid: i64,
) -> Result<poll::Poll, schema::TxError<ApiError>> {
    match poll::find(c, pid)? {
        Some(p) if p.session_id == sid => Ok(p),
        _ => abort(ApiError::NotFound("poll")),
    }
}

fn poll_row(c: &mut schema::Conn, pid: i64) -> Result<poll::PollRow, schema::TxError<ApiError>> {
    match poll::row(c, pid)? {
        Some(row) => Ok(row),
        None => abort(ApiError::NotFound("poll")),
    }
}

#[derive(InputObject)]
pub struct CreatePollInput {
    pub question: String,
    /// 2 to 10 options.
    pub options: Vec<String>,
    /// Voters may choose several options.
    #[graphql(default)]
    pub multiple_choice: bool,
}

#[Object]
impl InteractionQuery {
    /// Chat history of a live session the caller has joined, newest page first: the last
    /// `last` messages (1-200) before message `before` (the newest when absent), oldest first
    /// in the page. Deleted messages are left out.
    async fn chat_messages(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        #[graphql(default = 50)] last: i32,
        before: Option<ID>,
    ) -> Result<ChatPage> {
        let (sid, _) = present(ctx, &session_id, Action::View, Scope::Read)?;
        if !(1..=MAX_CHAT_PAGE).contains(&last) {
            return Err(
                ApiError::bad_input("last", format!("must be 1 to {MAX_CHAT_PAGE}")).into(),
            );
        }
        let before = before.map(|b| errors::parse_id("before", &b)).transpose()?;
        let limit = i64::from(last) + 1;
        let mut rows = super::load(ctx, move |c| chat_message::page(c, sid, before, limit)).await?;
        let has_older = rows.len() > last as usize;
        rows.truncate(last as usize);
        rows.reverse();
        let messages: Vec<ChatMessage> = rows
            .into_iter()
            .map(|(m, author)| {
                ChatMessage::from(&ChatLine {
                    id: m.id,
                    user_id: m.user_id,
                    author,
                    body: m.body,
                    sent_at: m.created_at,
                })
            })
            .collect();
        Ok(ChatPage {
            has_older,
            older_cursor: messages.first().map(|m| m.id.clone()),
            messages,
        })
    }

    /// Every question of a live session the caller has joined, oldest first (sort them by
    /// `votes` or `askedAt` as you show them). Dismissed ones are included with their state.
    async fn questions(&self, ctx: &Context<'_>, session_id: ID) -> Result<Vec<QuestionView>> {
        let (sid, me) = present(ctx, &session_id, Action::View, Scope::Read)?;
        let rows = super::load(ctx, move |c| question::list_for_session(c, sid)).await?;
        let viewer = Viewer::of(&me);
        Ok(rows
            .into_iter()
            .map(|r| QuestionView::of(&question_info(r), viewer))
            .collect())
    }

    /// Every poll of a live session the caller has joined, oldest first.
    async fn polls(&self, ctx: &Context<'_>, session_id: ID) -> Result<Vec<PollView>> {
        let (sid, me) = present(ctx, &session_id, Action::View, Scope::Read)?;
        let rows = super::load(ctx, move |c| poll::list_for_session(c, sid)).await?;
        let viewer = Viewer::of(&me);
        Ok(rows
            .into_iter()
            .map(|r| PollView::of(&poll_info(r), viewer))
            .collect())
    }
}

#[Object]
impl InteractionMutation {
    /// Posts a chat message (1 to 2000 characters) to a live session the caller has joined.
    /// Returns once the message is stored; everyone present gets `ChatMessagePosted`.
    /// BAD_USER_INPUT (`body`) when empty or too long; RATE_LIMITED (with `retryAfter`) past
    /// `auth.chat_per_user_per_minute`.
    async fn send_chat_message(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        body: String,
    ) -> Result<ChatMessage> {
        let (sid, me) = present(ctx, &session_id, Action::Participate, Scope::Write)?;
        let body = errors::text("body", &body, 1, MAX_CHAT)?;
        super::account::check_limit(&state(ctx).rate_limits.chat_user, &me.user_id)?;
        let now = schema::now_ms();
        let user_id = me.user_id;
        let row = super::load(ctx, move |c| {
            chat_message::create(
                c,
                &chat_message::NewChatMessage {
                    session_id: sid,
                    user_id,
                    body: &body,
                    created_at: now,
                },
            )
        })
        .await?;
        let line = ChatLine {
            id: row.id,
            user_id,
            author: me.name.clone(),
            body: row.body,
            sent_at: row.created_at,
        };
        let answer = ChatMessage::from(&line);
        tell(ctx, sid, &me, Interaction::ChatPosted(line));
        Ok(answer)
    }

    /// Removes a chat message for everyone (hosts and co-hosts): `ChatMessageDeleted`, and it
    /// leaves the history. NOT_FOUND when the session has no such message (or it is gone).
    async fn delete_chat_message(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        message_id: ID,
    ) -> Result<bool> {
        let (sid, me) = present(ctx, &session_id, Action::ModerateInteraction, Scope::Write)?;
        let mid = errors::parse_id("messageId", &message_id)?;
        let now = schema::now_ms();
        write(ctx, "", move |c| match chat_message::find(c, mid)? {
            Some(m) if m.session_id == sid && chat_message::delete(c, mid, now)? => Ok(()),
            _ => abort(ApiError::NotFound("message")),
        })
        .await?;
        tell(ctx, sid, &me, Interaction::ChatDeleted { message_id: mid });
        Ok(true)
    }

    /// Asks a question (1 to 1000 characters). With `anonymous`, other attendees do not see who
    /// asked; hosts and co-hosts do. RATE_LIMITED like chat (counted apart).
    async fn ask_question(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        body: String,
        #[graphql(default)] anonymous: bool,
    ) -> Result<QuestionView> {
        let (sid, me) = present(ctx, &session_id, Action::Participate, Scope::Write)?;
        let body = errors::text("body", &body, 1, MAX_QUESTION)?;
        super::account::check_limit(&state(ctx).rate_limits.question_user, &me.user_id)?;
        let now = schema::now_ms();
        let user_id = me.user_id;
        let row = write(ctx, "", move |c| {
            let q = question::create(
                c,
                &question::NewQuestion {
                    session_id: sid,
                    user_id,
                    body: &body,
                    state: question::OPEN,
                    created_at: now,
                    anonymous,
                },
            )?;
            question_in(c, sid, q.id)
        })
        .await?;
        self.changed_question(ctx, sid, &me, row)
    }

    /// Upvotes an open question: one upvote per person (CONFLICT for a second one).
    async fn upvote_question(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
    ) -> Result<QuestionView> {
        let (sid, me) = present(ctx, &session_id, Action::Participate, Scope::Write)?;
        let qid = errors::parse_id("questionId", &question_id)?;
        let (user_id, now) = (me.user_id, schema::now_ms());
        let row = write(ctx, "you already upvoted this question", move |c| {
            let row = question_in(c, sid, qid)?;
            if row.question.state != question::OPEN {
                return abort(ApiError::Conflict("the question is not open".into()));
            }
            if row.voters.contains(&user_id) {
                return abort(ApiError::Conflict(
                    "you already upvoted this question".into(),
                ));
            }
            question::upvote(c, qid, user_id, now)?;
            question_in(c, sid, qid)
        })
        .await?;
        self.changed_question(ctx, sid, &me, row)
    }

    /// Takes the caller's upvote back (nothing changes when there was none).
    async fn withdraw_upvote(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
    ) -> Result<QuestionView> {
        let (sid, me) = present(ctx, &session_id, Action::Participate, Scope::Write)?;
        let qid = errors::parse_id("questionId", &question_id)?;
        let user_id = me.user_id;
        let row = write(ctx, "", move |c| {
            question_in(c, sid, qid)?;
            question::withdraw_upvote(c, qid, user_id)?;
            question_in(c, sid, qid)
        })
        .await?;
        self.changed_question(ctx, sid, &me, row)
    }

    /// Answers a question (hosts and co-hosts): in writing with `answer` (up to 2000
    /// characters), or without it as answered live in the session.
    async fn answer_question(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
        answer: Option<String>,
    ) -> Result<QuestionView> {
        let answer = answer
            .map(|a| errors::text("answer", &a, 1, MAX_ANSWER))
            .transpose()?;
        self.moderate(ctx, session_id, question_id, question::ANSWERED, answer)
            .await
    }

    /// Dismisses a question (hosts and co-hosts): attendees no longer list it.
    async fn dismiss_question(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
    ) -> Result<QuestionView> {
        self.moderate(ctx, session_id, question_id, question::DISMISSED, None)
            .await
    }

    /// Opens an answered or dismissed question again (hosts and co-hosts); its answer goes.
    async fn reopen_question(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
    ) -> Result<QuestionView> {
        self.moderate(ctx, session_id, question_id, question::OPEN, None)
            .await
    }

    /// Creates an open poll (hosts and co-hosts): a question (1 to 300 characters) and 2 to 10
    /// distinct options (1 to 300 characters each).
    async fn create_poll(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        input: CreatePollInput,
    ) -> Result<PollView> {
        let (sid, me) = present(ctx, &session_id, Action::ManagePolls, Scope::Write)?;
        let question_text = errors::text("input.question", &input.question, 1, MAX_POLL_TEXT)?;
        if !(MIN_POLL_OPTIONS..=MAX_POLL_OPTIONS).contains(&input.options.len()) {
            return Err(ApiError::bad_input(
                "input.options",
                format!("give {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} options"),
            )
            .into());
        }
        let mut options = Vec::with_capacity(input.options.len());
        for (i, o) in input.options.iter().enumerate() {
            let o = errors::text(&format!("input.options.{i}"), o, 1, MAX_POLL_TEXT)?;
            if options.contains(&o) {
                return Err(ApiError::bad_input(
                    &format!("input.options.{i}"),
                    "is the same as another option",
                )
                .into());
            }
            options.push(o);
        }
        let options = serde_json::to_string(&options).map_err(|_| ApiError::Internal)?;
        let (user_id, now, multiple) = (me.user_id, schema::now_ms(), input.multiple_choice);
        let row = write(ctx, "", move |c| {
            let p = poll::create(
                c,
                &poll::NewPoll {
                    session_id: sid,
                    created_by: user_id,
                    question: &question_text,
                    options: &options,
                    state: poll::OPEN,
                    created_at: now,
                    multiple_choice: multiple,
                },
            )?;
            poll_row(c, p.id)
        })
        .await?;
        Ok(self.changed_poll(ctx, sid, &me, row))
    }

    /// Votes in an open poll: one option (single choice) or one or more distinct ones (multiple
    /// choice), by index. Once per person (CONFLICT for a second ballot); BAD_USER_INPUT
    /// (`options`) for a choice the poll does not allow.
    async fn vote_poll(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        poll_id: ID,
        options: Vec<i32>,
    ) -> Result<PollView> {
        let (sid, me) = present(ctx, &session_id, Action::Participate, Scope::Write)?;
        let pid = errors::parse_id("pollId", &poll_id)?;
        let (user_id, now) = (me.user_id, schema::now_ms());
        let row = write(ctx, "you already voted in this poll", move |c| {
            let p = poll_in(c, sid, pid)?;
            if p.state != poll::OPEN {
                return abort(ApiError::Conflict("the poll is closed".into()));
            }
            let n = serde_json::from_str::<Vec<String>>(&p.options)
                .map(|o| o.len())
                .unwrap_or(0);
            let mut chosen = options.clone();
            chosen.sort_unstable();
            chosen.dedup();
            let valid = !chosen.is_empty()
                && chosen.len() == options.len()
                && chosen.iter().all(|&o| o >= 0 && (o as usize) < n)
                && (p.multiple_choice || chosen.len() == 1);
            if !valid {
                let what = if p.multiple_choice {
                    format!(
                        "choose one or more distinct options from 0 to {}",
                        n.saturating_sub(1)
                    )
                } else {
                    format!(
                        "choose exactly one option from 0 to {}",
                        n.saturating_sub(1)
                    )
                };
                return abort(ApiError::bad_input("options", what));
            }
            if poll::has_voted(c, pid, user_id)? {
                return abort(ApiError::Conflict("you already voted in this poll".into()));
            }
            poll::vote(c, pid, user_id, &chosen, now)?;
            poll_row(c, pid)
        })
        .await?;
        Ok(self.changed_poll(ctx, sid, &me, row))
    }

    /// Closes a poll (hosts and co-hosts): no more votes.
    async fn close_poll(&self, ctx: &Context<'_>, session_id: ID, poll_id: ID) -> Result<PollView> {
        let (sid, me) = present(ctx, &session_id, Action::ManagePolls, Scope::Write)?;
        let pid = errors::parse_id("pollId", &poll_id)?;
        let now = schema::now_ms();
        let row = write(ctx, "", move |c| {
            poll_in(c, sid, pid)?;
            poll::close(c, pid, now)?;
            poll_row(c, pid)
        })
        .await?;
        Ok(self.changed_poll(ctx, sid, &me, row))
    }

    /// Shows a poll's results to everyone (hosts and co-hosts), or hides them again with
    /// `shared: false`.
    async fn share_poll_results(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        poll_id: ID,
        #[graphql(default = true)] shared: bool,
    ) -> Result<PollView> {
        let (sid, me) = present(ctx, &session_id, Action::ManagePolls, Scope::Write)?;
        let pid = errors::parse_id("pollId", &poll_id)?;
        let row = write(ctx, "", move |c| {
            poll_in(c, sid, pid)?;
            poll::set_shared(c, pid, shared)?;
            poll_row(c, pid)
        })
        .await?;
        Ok(self.changed_poll(ctx, sid, &me, row))
    }
}

impl InteractionMutation {
    async fn moderate(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        question_id: ID,
        to: &'static str,
        answer: Option<String>,
    ) -> Result<QuestionView> {
        let (sid, me) = present(ctx, &session_id, Action::ModerateInteraction, Scope::Write)?;
        let qid = errors::parse_id("questionId", &question_id)?;
        let now = schema::now_ms();
        let row = write(ctx, "", move |c| {
            question_in(c, sid, qid)?;
            question::set_state(c, qid, to, answer.as_deref(), now)?;
            question_in(c, sid, qid)
        })
        .await?;
        self.changed_question(ctx, sid, &me, row)
    }

    fn changed_question(
        &self,
        ctx: &Context<'_>,
        sid: i64,
        me: &ParticipantInfo,
        row: question::QuestionRow,
    ) -> Result<QuestionView> {
        let info = question_info(row);
        let answer = QuestionView::of(&info, Viewer::of(me));
        tell(ctx, sid, me, Interaction::Question(info));
        Ok(answer)
    }

    fn changed_poll(
        &self,
        ctx: &Context<'_>,
        sid: i64,
        me: &ParticipantInfo,
        row: poll::PollRow,
    ) -> PollView {
        let info = poll_info(row);
        let answer = PollView::of(&info, Viewer::of(me));
        tell(ctx, sid, me, Interaction::Poll(info));
        answer
    }
}
