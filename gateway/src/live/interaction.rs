//! What chat, Q&A and polls put on a session's room lane: plain values, built by the GraphQL
//! resolvers from rows they have just committed, and carried as room events (numbered, resumable)
//! so they never touch a participant's directed mailbox of signaling.
//!
//! Each value is the whole current state of its item (a question with every voter, a poll with
//! every ballot), so a client applies it by replacing what it had: applying one twice, or after a
//! history query that already included it, changes nothing. What a given subscriber may see of it
//! (an anonymous asker, unshared results) is decided per subscriber when it is delivered.

/// Something that changed in a session's chat, Q&A or polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// A chat message was stored.
    ChatPosted(ChatLine),
    /// A moderator removed a chat message.
    ChatDeleted { message_id: i64 },
    /// A question was asked, upvoted, answered, dismissed or reopened.
    Question(QuestionInfo),
    /// A poll was created, voted in, closed or its results shared.
    Poll(PollInfo),
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub id: i64,
    pub user_id: i64,
    pub author: String,
    pub body: String,
    /// Unix milliseconds.
    pub sent_at: i64,
}

/// Where a question stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionState {
    Open,
    Answered,
    Dismissed,
}

/// A question with everything the Q&A list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionInfo {
    pub id: i64,
    pub user_id: i64,
    pub asker: String,
    pub anonymous: bool,
    pub body: String,
    pub state: QuestionState,
    /// The written answer (`None` when answered live, or not answered).
    pub answer: Option<String>,
    /// Who upvoted it (user ids).
    pub voters: Vec<i64>,
    /// Unix milliseconds.
    pub asked_at: i64,
}

/// A poll with its ballots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollInfo {
    pub id: i64,
    pub question: String,
    pub options: Vec<String>,
    pub multiple_choice: bool,
    pub open: bool,
    pub results_shared: bool,
    /// (voter, chosen option indexes).
    pub ballots: Vec<(i64, Vec<u32>)>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl PollInfo {
    /// Votes per option.
    pub fn counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.options.len()];
        for (_, chosen) in &self.ballots {
            for &o in chosen {
                if let Some(c) = counts.get_mut(o as usize) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// The options `user_id` chose, if they voted.
    pub fn choices_of(&self, user_id: i64) -> Option<&[u32]> {
        self.ballots
            .iter()
            .find(|(u, _)| *u == user_id)
            .map(|(_, c)| c.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_ballots_and_ignore_unknown_options() {
        let poll = PollInfo {
            id: 1,
            question: "?".into(),
            options: vec!["a".into(), "b".into(), "c".into()],
            multiple_choice: true,
            open: true,
            results_shared: false,
            ballots: vec![(10, vec![0, 2]), (11, vec![2]), (12, vec![7])],
            created_at: 0,
        };
        assert_eq!(poll.counts(), vec![1, 0, 2]);
        assert_eq!(poll.choices_of(11), Some(&[2][..]));
        assert_eq!(poll.choices_of(99), None);
    }
}
