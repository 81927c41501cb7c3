//! One file per entity: the row struct, its insertable, and the queries the gateway needs.
//! Functions take a connection and return `QueryResult`; transactions are the caller's choice.

pub mod api_token;
pub mod auth_identity;
pub mod auth_session;
pub mod chat_message;
pub mod class;
pub mod class_member;
pub mod class_role;
pub mod class_session;
pub mod hand_raise;
pub mod login_flow;
pub mod participant;
pub mod poll;
pub mod poll_vote;
pub mod question;
pub mod question_vote;
pub mod recording;
pub mod session_removal;
pub mod user;
