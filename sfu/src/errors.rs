//! Why a request to the SFU was refused.

use crate::sdp_check::SdpError;

/// Why joining (or a renegotiation offer) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    #[error("the offer is not a valid session description: {0}")]
    BadOffer(String),
    #[error("the peer connection could not be set up: {0}")]
    Setup(String),
    #[error("the SFU is shutting down")]
    Closed,
    #[error("the SFU shard is overloaded: its request queue is full")]
    Busy,
    #[error("no such peer")]
    UnknownPeer,
}

impl From<SdpError> for JoinError {
    fn from(e: SdpError) -> JoinError {
        JoinError::BadOffer(e.to_string())
    }
}

/// Why a peer's answer to a server offer was refused. A refused answer changes nothing: the
/// server offer stays pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("no such peer")]
    UnknownPeer,
    #[error("no server offer is waiting for an answer")]
    NoOfferPending,
    #[error("the answer cannot be applied: {0}")]
    BadAnswer(String),
    #[error("the SFU is shutting down")]
    Closed,
}

impl From<SdpError> for AnswerError {
    fn from(e: SdpError) -> AnswerError {
        AnswerError::BadAnswer(e.to_string())
    }
}

/// Why a peer's trickled ICE candidate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    #[error("no such peer")]
    UnknownPeer,
    #[error("not an ICE candidate: {0}")]
    BadCandidate(String),
    #[error("the SFU is shutting down")]
    Closed,
}
