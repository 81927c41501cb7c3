//! Passwords: argon2id hashes (PHC strings), computed by a small pool of hashing threads.
//!
//! Each hash needs 19 MiB of working memory (argon2id's recommended cost). Computed on
//! `spawn_blocking` threads, a burst of sign-ups used one such buffer per blocking thread, and the
//! allocator kept them all: a gateway grew past 1 GB after 100 concurrent sign-ups. Here
//! [`HASHING_THREADS`] threads each own one buffer, reused for every hash, so hashing holds at
//! most that many buffers whatever the load, and bursts queue (bounded, [`QUEUE`]) instead of
//! taking more memory or cores from the server. A thread gives its buffer back to the system
//! when the queue runs empty, so a burst leaves nothing resident.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{mpsc, oneshot};

/// Threads that compute hashes (each holds one working buffer of 19 MiB once used).
pub const HASHING_THREADS: usize = 2;
/// Hashes waiting for a thread; callers beyond that wait to queue (backpressure, nothing dropped).
pub const QUEUE: usize = 256;

/// Jobs sent and not yet taken by a hashing thread.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Hashing threads holding working memory.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Hashing threads holding working memory now (none once a burst is over).
pub fn held_buffers() -> usize {
    HELD.load(Ordering::Acquire)
}

/// Signalled whenever a thread gives its working memory back (see [`wait_until_none_held`]).
static RELEASED: (std::sync::Mutex<()>, std::sync::Condvar) =
    (std::sync::Mutex::new(()), std::sync::Condvar::new());

/// Gives a thread's working memory back to the system.
fn release(memory: &mut Vec<Block>) {
    if memory.capacity() > 0 {
        *memory = Vec::new();
        HELD.fetch_sub(1, Ordering::AcqRel);
        let _guard = RELEASED.0.lock().unwrap_or_else(|p| p.into_inner());
        RELEASED.1.notify_all();
    }
}

/// Blocks until no hashing thread holds working memory, or `timeout` passes; whether none is.
#[cfg(test)]
fn wait_until_none_held(timeout: std::time::Duration) -> bool {
    let guard = RELEASED.0.lock().unwrap_or_else(|p| p.into_inner());
    let (_guard, waited) = RELEASED
        .1
        .wait_timeout_while(guard, timeout, |_| held_buffers() > 0)
        .unwrap_or_else(|p| p.into_inner());
    !waited.timed_out() || held_buffers() == 0
}

/// Blocks (1 KiB each) reserved for a thread's working memory: more than glibc's largest
/// dynamic mmap threshold (32 MiB on 64-bit), so the buffer is always its own mapping, and
/// freeing it after a burst gives it back to the system. Argon2's 19 MiB would otherwise raise
/// that threshold when first freed and be carved from the heap from then on, where freeing
/// keeps it resident. Only the pages Argon2 touches (its `m_cost`) become resident.
const WORKING_MEMORY_RESERVE: usize = 33 * 1024;

enum Job {
    Hash {
        password: String,
        salt: [u8; 16],
        done: oneshot::Sender<Result<String, String>>,
    },
    Verify {
        password: String,
        stored: String,
        done: oneshot::Sender<bool>,
    },
}

/// The pool's queue, started on first use.
fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..HASHING_THREADS {
            let rx = std::sync::Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        // One thread waits on the queue at a time; the others wait for the lock.
                        let job = {
                            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            match rx.try_recv() {
                                Ok(job) => Some(job),
                                Err(mpsc::error::TryRecvError::Empty) => {
                                    // The burst is over: its working memory goes back to the
                                    // system before the wait (see `WORKING_MEMORY_RESERVE`).
                                    release(&mut memory);
                                    rx.blocking_recv()
                                }
                                Err(mpsc::error::TryRecvError::Disconnected) => None,
                            }
                        };
                        let Some(job) = job else { return };
                        QUEUED.fetch_sub(1, Ordering::AcqRel);
                        run(job, &mut memory);
                        // Nothing else queued: give the memory back now, not after waiting for
                        // the queue's lock (which the other thread holds while it waits for work,
                        // so a buffer would otherwise stay resident after every burst).
                        if QUEUED.load(Ordering::Acquire) == 0 {
                            release(&mut memory);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "a password hashing thread did not start");
            }
        }
        tx
    })
}

fn run(job: Job, memory: &mut Vec<Block>) {
    match job {
        Job::Hash {
            password,
            salt,
            done,
        } => {
            let _ = done.send(hash_with(&password, &salt, memory));
        }
        Job::Verify {
            password,
            stored,
            done,
        } => {
            let _ = done.send(verify_with(&password, &stored, memory));
        }
    }
}

/// Computes argon2 of `password` and `salt` into `out`, in `memory` (grown when the parameters
/// need more: a stored hash made with a higher cost).
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), String> {
    if memory.len() < params.block_count() {
        if memory.capacity() == 0 {
            HELD.fetch_add(1, Ordering::AcqRel);
        }
        memory.reserve_exact(WORKING_MEMORY_RESERVE.max(params.block_count()) - memory.len());
        memory.resize(params.block_count(), Block::new());
    }
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
        .map_err(|e| e.to_string())
}

fn hash_with(password: &str, salt: &[u8; 16], memory: &mut Vec<Block>) -> Result<String, String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, &params, password, salt, &mut out, memory)?;
    let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
    let hash = Output::new(&out).map_err(|e| e.to_string())?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str(),
        hash
    ))
}

fn verify_with(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let mut check = || -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let expected = parsed.hash?;
        let mut params = Params::try_from(&parsed).ok()?;
        if params.output_len() != Some(expected.len()) {
            params = Params::new(
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                Some(expected.len()),
            )
            .ok()?;
        }
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        compute(&argon, &params, password, salt, &mut out, memory).ok()?;
        // Output's equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (hashing cost grows with length).
pub const MAX_LENGTH: usize = 128;

/// Why a password is refused, in words for the user.
pub fn check_strength(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(format!("must be at least {MIN_LENGTH} characters"));
    }
    if n > MAX_LENGTH {
        return Err(format!("must be at most {MAX_LENGTH} characters"));
    }
    Ok(())
}

/// Argon2id hash with a random salt.
pub async fn hash(password: String) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let (done, answer) = oneshot::channel();
    QUEUED.fetch_add(1, Ordering::AcqRel);
    if pool()
        .send(Job::Hash {
            password,
            salt,
            done,
        })
        .await
        .is_err()
    {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        return Err("password hashing stopped".to_owned());
    }
    answer
        .await
        .map_err(|_| "password hashing stopped".to_owned())?
}

/// Whether `password` matches the stored hash. A malformed hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    let (done, answer) = oneshot::channel();
    QUEUED.fetch_add(1, Ordering::AcqRel);
    let sent = pool()
        .send(Job::Verify {
            password,
            stored,
            done,
        })
        .await;
    if sent.is_err() {
        QUEUED.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    answer.await.unwrap_or(false)
}

/// A hash of a password nobody has, verified against when an account does not exist so that
/// "no such account" takes as long as "wrong password".
pub async fn dummy_verify(password: String) {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3GmPK7PfmiqmlrdJ0t8xOz5tbqaxI/4QfSTJhfq6dEE";
    let _ = verify(password, DUMMY.to_owned()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each hashing thread gives its working memory back once nothing is queued: none is held
    /// after a burst (other tests of this process may hash meanwhile, so it is awaited).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_leaves_no_working_memory_held() {
        let burst: Vec<_> = (0..6)
            .map(|i| tokio::spawn(hash(format!("a burst password {i}"))))
            .collect();
        for h in burst {
            h.await.unwrap().unwrap();
        }
        let none_held = tokio::task::spawn_blocking(|| {
            wait_until_none_held(std::time::Duration::from_secs(30))
        })
        .await
        .unwrap();
        assert!(
            none_held,
            "working memory still held after the burst: {}",
            held_buffers()
        );
    }

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), h.clone()).await);
        assert!(!verify("correct horse batterz".into(), h).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
    }

    #[tokio::test]
    async fn hashes_are_the_argon2_crates_own_format_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the crate's verifier...
        let ours = hash("correct horse battery".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        // ...and a hash of the crate's (as stored before) verifies with ours, at another cost too.
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        for params in [
            Params::default(),
            Params::new(8 * 1024, 1, 1, Some(24)).unwrap(),
        ] {
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string();
            assert!(verify("correct horse battery".into(), theirs.clone()).await);
            assert!(!verify("correct horse batterz".into(), theirs).await);
        }
    }

    #[tokio::test]
    async fn a_burst_of_hashes_all_complete() {
        let hashes: Vec<_> = (0..8)
            .map(|i| tokio::spawn(hash(format!("password number {i}"))))
            .collect();
        for (i, h) in hashes.into_iter().enumerate() {
            let h = h.await.unwrap().unwrap();
            assert!(verify(format!("password number {i}"), h).await);
        }
    }

    #[test]
    fn strength_is_about_length() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("exactly10!").is_ok());
        assert!(check_strength(&"x".repeat(129)).is_err());
    }
}
