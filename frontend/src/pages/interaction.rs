//! What the classroom's side panel knows of chat, Q&A and polls: one typed struct per server
//! event and one pure reducer ([`Interaction::apply`]), tested without a browser. The panel's
//! tabs (`chat.rs`, `qa.rs`, `polls.rs`) only read this state and call the API.
//!
//! Every event carries the whole item (a message, a question with its votes, a poll with its
//! results as the viewer may see them), so applying one replaces what was there: events that
//! overlap a history query, or come twice, change nothing.

use serde::Deserialize;

/// The history a page loads when it joins (and again after a snapshot it cannot resume from).
pub const HISTORY: &str = "query($s: ID!) {
  chatMessages(sessionId: $s, last: 100) { messages { id authorId authorName body sentAt } hasOlder olderCursor }
  questions(sessionId: $s) { id body anonymous askerName mine state answer answeredLive votes upvotedByMe askedAt }
  polls(sessionId: $s) { id question options multipleChoice open resultsShared voted myChoices results voters createdAt } }";

/// Longest chat message the server takes (characters).
pub const MAX_CHAT: usize = 2000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: String,
    pub author_id: String,
    pub author_name: String,
    pub body: String,
    pub sent_at: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub id: String,
    pub body: String,
    pub anonymous: bool,
    /// `None` when anonymous and the viewer is an attendee.
    pub asker_name: Option<String>,
    pub mine: bool,
    /// `OPEN`, `ANSWERED` or `DISMISSED`.
    pub state: String,
    pub answer: Option<String>,
    pub answered_live: bool,
    pub votes: i64,
    pub upvoted_by_me: bool,
    pub asked_at: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub id: String,
    pub question: String,
    pub options: Vec<String>,
    pub multiple_choice: bool,
    pub open: bool,
    pub results_shared: bool,
    pub voted: bool,
    pub my_choices: Vec<i64>,
    /// Votes per option: `None` while the viewer may not see them.
    pub results: Option<Vec<i64>>,
    pub voters: Option<i64>,
    pub created_at: String,
}

/// A server event of chat, Q&A or polls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "__typename")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    ChatMessagePosted {
        message: ChatMessage,
    },
    #[serde(rename_all = "camelCase")]
    ChatMessageDeleted {
        message_id: String,
    },
    QuestionUpdated {
        question: Question,
    },
    PollUpdated {
        poll: Poll,
    },
}

impl Event {
    /// The event in a `sessionEvents` payload, when it is one of these.
    pub fn parse(e: &serde_json::Value) -> Option<Event> {
        match e["__typename"].as_str()? {
            "ChatMessagePosted" | "ChatMessageDeleted" | "QuestionUpdated" | "PollUpdated" => {
                serde_json::from_value(e.clone()).ok()
            }
            _ => None,
        }
    }
}

/// The panel's tabs. (A People tab lives in its own component beside these.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    Chat,
    Questions,
    Polls,
}

/// How the Q&A list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionOrder {
    /// Most upvoted first (then oldest first).
    Top,
    /// Newest first.
    Newest,
}

/// Chat, questions and polls as this viewer sees them, and what they have not looked at yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interaction {
    /// The viewer's user id (their own messages are never unread).
    pub my_user_id: String,
    /// Messages by id order (ids grow with time).
    pub chat: Vec<ChatMessage>,
    /// Older messages exist on the server.
    pub chat_has_older: bool,
    pub questions: Vec<Question>,
    pub polls: Vec<Poll>,
    /// The tab in view; `None` when the panel is closed.
    pub open_tab: Option<Tab>,
    pub unread_chat: u32,
    pub unread_questions: u32,
    pub unread_polls: u32,
}

fn id_num(id: &str) -> i64 {
    id.parse().unwrap_or(i64::MAX)
}

impl Interaction {
    /// Applies one event.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::ChatMessagePosted { message } => {
                let mine = message.author_id == self.my_user_id;
                if self.upsert_message(message) && !mine && self.open_tab != Some(Tab::Chat) {
                    self.unread_chat += 1;
                }
            }
            Event::ChatMessageDeleted { message_id } => {
                self.chat.retain(|m| m.id != message_id);
            }
            Event::QuestionUpdated { question } => {
                let new = !self.questions.iter().any(|q| q.id == question.id);
                let counts = new && !question.mine && question.state != "DISMISSED";
                match self.questions.iter_mut().find(|q| q.id == question.id) {
                    Some(q) => *q = question,
                    None => self.questions.push(question),
                }
                if counts && self.open_tab != Some(Tab::Questions) {
                    self.unread_questions += 1;
                }
            }
            Event::PollUpdated { poll } => {
                let new = !self.polls.iter().any(|p| p.id == poll.id);
                match self.polls.iter_mut().find(|p| p.id == poll.id) {
                    Some(p) => *p = poll,
                    None => self.polls.push(poll),
                }
                if new && self.open_tab != Some(Tab::Polls) {
                    self.unread_polls += 1;
                }
            }
        }
    }

    /// Adds a message in id order; false when it was already there.
    fn upsert_message(&mut self, message: ChatMessage) -> bool {
        match self
            .chat
            .binary_search_by_key(&id_num(&message.id), |m| id_num(&m.id))
        {
            Ok(i) => {
                self.chat[i] = message;
                false
            }
            Err(i) => {
                self.chat.insert(i, message);
                true
            }
        }
    }

    /// Takes the history query's answer: it replaces questions and polls, and merges chat
    /// (messages that came live meanwhile stay).
    pub fn load_history(&mut self, data: &serde_json::Value) {
        let messages: Vec<ChatMessage> =
            serde_json::from_value(data["chatMessages"]["messages"].clone()).unwrap_or_default();
        // A reload of history after a resync: messages deleted meanwhile must go.
        if let Some(first) = messages.first() {
            let from = id_num(&first.id);
            let kept: std::collections::HashSet<&str> =
                messages.iter().map(|m| m.id.as_str()).collect();
            let newest = messages.last().map(|m| id_num(&m.id)).unwrap_or(from);
            self.chat.retain(|m| {
                let n = id_num(&m.id);
                n < from || n > newest || kept.contains(m.id.as_str())
            });
        }
        for m in messages {
            self.upsert_message(m);
        }
        self.chat_has_older = data["chatMessages"]["hasOlder"].as_bool().unwrap_or(false);
        if let Ok(q) = serde_json::from_value(data["questions"].clone()) {
            self.questions = q;
        }
        if let Ok(p) = serde_json::from_value(data["polls"].clone()) {
            self.polls = p;
        }
    }

    /// Opens a tab (or closes the panel with `None`); what it shows is read.
    pub fn open(&mut self, tab: Option<Tab>) {
        self.open_tab = tab;
        match tab {
            Some(Tab::Chat) => self.unread_chat = 0,
            Some(Tab::Questions) => self.unread_questions = 0,
            Some(Tab::Polls) => self.unread_polls = 0,
            None => {}
        }
    }

    /// The questions to list, in `order`. Attendees do not see dismissed ones; moderators see
    /// them last.
    pub fn questions_in(&self, order: QuestionOrder, moderator: bool) -> Vec<Question> {
        let mut list: Vec<Question> = self
            .questions
            .iter()
            .filter(|q| moderator || q.state != "DISMISSED")
            .cloned()
            .collect();
        let rank = |q: &Question| match q.state.as_str() {
            "OPEN" => 0,
            "ANSWERED" => 1,
            _ => 2,
        };
        list.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| match order {
                QuestionOrder::Top => b
                    .votes
                    .cmp(&a.votes)
                    .then_with(|| id_num(&a.id).cmp(&id_num(&b.id))),
                QuestionOrder::Newest => id_num(&b.id).cmp(&id_num(&a.id)),
            })
        });
        list
    }
}

/// `hh:mm` of an RFC 3339 time, as chat shows it (UTC as the server sends it; the browser's
/// own zone is applied by the caller when it can).
pub fn clock(rfc3339: &str) -> String {
    rfc3339.get(11..16).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(id: &str, author: &str) -> serde_json::Value {
        json!({ "__typename": "ChatMessagePosted", "seq": 1, "message": {
            "id": id, "authorId": author, "authorName": "A", "body": format!("m{id}"),
            "sentAt": "2030-01-01T10:15:00Z" } })
    }

    fn question(id: &str, votes: i64, state: &str) -> serde_json::Value {
        json!({ "__typename": "QuestionUpdated", "seq": 2, "question": {
            "id": id, "body": "q", "anonymous": false, "askerName": "Bo", "mine": false,
            "state": state, "answer": null, "answeredLive": false, "votes": votes,
            "upvotedByMe": false, "askedAt": "2030-01-01T10:15:00Z" } })
    }

    #[test]
    fn chat_keeps_id_order_counts_unread_and_applies_deletes() {
        let mut s = Interaction {
            my_user_id: "me".into(),
            ..Interaction::default()
        };
        for e in [
            msg("3", "u2"),
            msg("1", "u2"),
            msg("3", "u2"),
            msg("2", "me"),
        ] {
            s.apply(Event::parse(&e).unwrap());
        }
        let ids: Vec<&str> = s.chat.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(s.unread_chat, 2, "a repeat and my own are not unread");
        s.open(Some(Tab::Chat));
        assert_eq!(s.unread_chat, 0);
        s.apply(Event::parse(&msg("4", "u2")).unwrap());
        assert_eq!(s.unread_chat, 0, "read while the tab is open");
        let del = json!({ "__typename": "ChatMessageDeleted", "seq": 3, "messageId": "2" });
        s.apply(Event::parse(&del).unwrap());
        assert_eq!(s.chat.len(), 3);
        assert_eq!(clock(&s.chat[0].sent_at), "10:15");
    }

    #[test]
    fn questions_rise_with_votes_and_dismissed_ones_hide_from_attendees() {
        let mut s = Interaction::default();
        for e in [
            question("1", 0, "OPEN"),
            question("2", 0, "OPEN"),
            question("3", 5, "DISMISSED"),
            question("4", 9, "ANSWERED"),
            question("2", 2, "OPEN"),
        ] {
            s.apply(Event::parse(&e).unwrap());
        }
        let top: Vec<String> = s
            .questions_in(QuestionOrder::Top, false)
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(top, ["2", "1", "4"]);
        let newest: Vec<String> = s
            .questions_in(QuestionOrder::Newest, true)
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(newest, ["2", "1", "4", "3"]);
        assert_eq!(s.unread_questions, 3, "a dismissed one is not news");
    }

    #[test]
    fn history_merges_with_live_messages_and_replaces_questions() {
        let mut s = Interaction::default();
        s.apply(Event::parse(&msg("9", "u2")).unwrap());
        s.apply(Event::parse(&msg("5", "u2")).unwrap());
        s.load_history(&json!({
            "chatMessages": { "messages": [
                { "id": "4", "authorId": "u", "authorName": "A", "body": "x", "sentAt": "" },
                { "id": "6", "authorId": "u", "authorName": "A", "body": "y", "sentAt": "" }
            ], "hasOlder": true },
            "questions": [],
            "polls": []
        }));
        let ids: Vec<&str> = s.chat.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["4", "6", "9"],
            "5 was deleted meanwhile; 9 came after"
        );
        assert!(s.chat_has_older);
    }
}
