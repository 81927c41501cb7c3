//! Rate limits on sign-in and sign-up, per client IP and per account, and on chat and questions
//! per user (governor, keyed GCRA).
//!
//! Sign-in attempts for one account are limited per source address, and more loosely for all
//! sources together: an attacker guessing from one address is stopped after a few attempts
//! without locking the owner out (they sign in from elsewhere); only guesses spread over many
//! addresses (more than the ratio of the two limits) reach the account-wide limit, which then
//! stops everyone for a while, the owner included. Limits apply to the operation, on every
//! transport (HTTP and websocket both give the client's address).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

/// The limiters. Keys are kept in memory: one node's view (several nodes each limit on their own).
pub struct RateLimits {
    /// Sign-in attempts per client IP.
    pub sign_in_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Sign-in attempts per account (lower-cased email) and client IP (none when unknown).
    pub sign_in_account_ip: DefaultKeyedRateLimiter<(String, Option<IpAddr>)>,
    /// Sign-in attempts per account, from every IP together.
    pub sign_in_account: DefaultKeyedRateLimiter<String>,
    /// Sign-ups per client IP.
    pub sign_up_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Chat messages per user.
    pub chat_user: DefaultKeyedRateLimiter<i64>,
    /// Questions asked per user.
    pub question_user: DefaultKeyedRateLimiter<i64>,
}

/// Attempts per minute, each a burst of the same size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub sign_in_per_ip: u32,
    pub sign_in_per_account_and_ip: u32,
    pub sign_in_per_account: u32,
    pub sign_up_per_ip: u32,
    /// Chat messages (and, apart, questions) per minute; a quarter of them in a burst.
    pub chat_per_user: u32,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// `n` per minute, a quarter of them (at least one) back to back: someone typing quickly is
/// never stopped, a script flooding the room is after a few lines.
fn chatty(n: u32) -> Quota {
    let burst = NonZeroU32::new((n / 4).max(1)).unwrap_or(NonZeroU32::MIN);
    per_minute(n).allow_burst(burst)
}

impl RateLimits {
    pub fn new(limits: Limits) -> RateLimits {
        RateLimits {
            sign_in_ip: DefaultKeyedRateLimiter::keyed(per_minute(limits.sign_in_per_ip)),
            sign_in_account_ip: DefaultKeyedRateLimiter::keyed(per_minute(
                limits.sign_in_per_account_and_ip,
            )),
            sign_in_account: DefaultKeyedRateLimiter::keyed(per_minute(limits.sign_in_per_account)),
            sign_up_ip: DefaultKeyedRateLimiter::keyed(per_minute(limits.sign_up_per_ip)),
            chat_user: DefaultKeyedRateLimiter::keyed(chatty(limits.chat_per_user)),
            question_user: DefaultKeyedRateLimiter::keyed(chatty(limits.chat_per_user)),
        }
    }
}
