//! The GraphQL websocket (`graphql-transport-ws`, and the older `graphql-ws`): async-graphql's
//! protocol engine, plus what it leaves out.
//!
//! - The credential is checked for every operation, not once per connection: `connection_init`
//!   only records what was presented (a token in the payload, else the upgrade's session cookie),
//!   and each operation resolves it again ([`PerOperation`]), so a session signed out or a token
//!   revoked after the socket opened is anonymous on it from the next operation on.
//! - Each operation carries the client's IP address, so per-IP rate limits hold here as over HTTP.
//! - The protocol is enforced: no `connection_init` within the timeout closes with 4408, an
//!   operation before it with 4401, an id already running with 4409, a message that is not of the
//!   protocol with 4400, a `connection_init` with a token that is none of ours with 4403.
//!
//! The reader of the client's messages and the writer of the engine's never wait on each other:
//! a slow client cannot stall delivery, and the engine only sees messages that passed the checks.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_graphql::http::{ClientMessage, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::{ApiSchema, ClientIp};
use crate::AppState;
use crate::auth::{self, Presented};

/// Close codes of `graphql-transport-ws`.
pub mod close {
    /// A message the protocol does not know.
    pub const BAD_MESSAGE: u16 = 4400;
    /// An operation before `connection_init` was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    /// No `connection_init` in time.
    pub const INIT_TIMEOUT: u16 = 4408;
    /// An operation id that is already running.
    pub const DUPLICATE_ID: u16 = 4409;
    /// `connection_init` presented a token that is no token of ours.
    pub const FORBIDDEN: u16 = 4403;
}

/// Runs every operation of one connection with the caller resolved for it, from the credential
/// the connection presented.
#[derive(Clone)]
pub struct PerOperation {
    schema: ApiSchema,
    state: AppState,
    /// What `connection_init` presented; unset before it.
    credential: Arc<OnceLock<Presented>>,
    ip: ClientIp,
}

impl PerOperation {
    /// The request with its caller and client IP, resolved now.
    async fn prepare(&self, request: Request) -> Result<Request, Response> {
        let presented = self.credential.get().cloned().unwrap_or(Presented::None);
        match auth::resolve(&self.state.db, presented).await {
            Ok(caller) => Ok(request.data(caller).data(self.ip)),
            Err(e) => {
                tracing::error!(error = %e, "resolving the caller failed");
                Err(Response::from_errors(vec![super::guard::with_code(
                    async_graphql::ServerError::new("authentication unavailable", None),
                    "INTERNAL",
                )]))
            }
        }
    }
}

impl Executor for PerOperation {
    async fn execute(&self, request: Request) -> Response {
        match self.prepare(request).await {
            Ok(request) => self.schema.execute(request).await,
            Err(response) => response,
        }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let this = self.clone();
        futures_util::stream::once(async move {
            match this.prepare(request).await {
                Ok(request) => Executor::execute_stream(&this.schema, request, session_data),
                Err(response) => futures_util::stream::once(async move { response }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

/// The protocol named in `Sec-WebSocket-Protocol`, if it is one we speak.
pub fn protocol(headers: &axum::http::HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| p.trim().parse().ok())
}

/// One connection, until either side closes it.
pub struct Connection {
    pub state: AppState,
    pub protocol: WebSocketProtocols,
    /// The session cookie of the upgrade request, used unless `connection_init` has a token.
    pub cookie: Presented,
    pub ip: Option<IpAddr>,
    pub init_timeout: Duration,
}

/// Ids of the operations running, shared by the reader (which adds them) and the writer (which
/// sees them complete). A std mutex: held for a set operation, never across an await.
type Running = Arc<Mutex<HashSet<String>>>;

fn running_ids(running: &Running) -> std::sync::MutexGuard<'_, HashSet<String>> {
    running.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    pub async fn serve(self, socket: WebSocket) {
        let (mut sink, source) = socket.split();
        let credential = Arc::new(OnceLock::new());
        let executor = PerOperation {
            schema: self.state.api.clone(),
            state: self.state.clone(),
            credential: Arc::clone(&credential),
            ip: ClientIp(self.ip),
        };
        // Boxed: tokio allocates a channel's slots 32 at a time, and a `ClientMessage` is a few
        // hundred bytes (it holds a whole request), so unboxed that was 14 KB per connection.
        let (to_engine, from_reader) = mpsc::channel::<Box<ClientMessage>>(16);
        let (close_tx, mut close_rx) = mpsc::channel::<(u16, String)>(1);
        let running: Running = Arc::default();

        let cookie = self.cookie;
        let state = self.state.clone();
        let refuse = close_tx.clone();
        let engine = async_graphql::http::WebSocket::from_message_stream(
            executor,
            tokio_stream_of(from_reader).map(|m| m.map(|m| *m)),
            self.protocol,
        )
        .on_connection_init(move |payload| async move {
            let presented = match super::token_from_payload(&payload) {
                Some(token) => Presented::Bearer(token),
                None => cookie,
            };
            // A token that is no token of ours (unknown, expired, revoked) is refused at once
            // (4403), rather than leaving a connection that is silently anonymous. A stale
            // session cookie stays anonymous, as over HTTP.
            if let Presented::Bearer(_) = &presented {
                let caller = auth::resolve(&state.db, presented.clone())
                    .await
                    .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                if matches!(caller, auth::Caller::Anonymous) {
                    let _ = refuse.try_send((close::FORBIDDEN, "Forbidden: unknown token".into()));
                    return Err(async_graphql::Error::new("unknown token"));
                }
            }
            // Resolved again for each operation; recorded once.
            let _ = credential.set(presented);
            let mut data = Data::default();
            data.insert(state);
            Ok(data)
        });

        let reader = read(
            source,
            to_engine,
            close_tx,
            Arc::clone(&running),
            self.init_timeout,
        );
        let writer = async {
            let mut engine = std::pin::pin!(engine);
            loop {
                let message = tokio::select! {
                    // A close the reader asked for goes first (its input to the engine has
                    // ended, so the engine ends too).
                    biased;
                    Some((code, reason)) = close_rx.recv() => WsMessage::Close(code, reason),
                    m = engine.next() => match m {
                        Some(m) => m,
                        None => match close_rx.try_recv() {
                            Ok((code, reason)) => WsMessage::Close(code, reason),
                            Err(_) => return,
                        },
                    },
                };
                let frame = match message {
                    WsMessage::Text(text) => {
                        if let Some(id) = completed_id(&text) {
                            running_ids(&running).remove(&id);
                        }
                        Message::Text(text.into())
                    }
                    WsMessage::Close(code, reason) => {
                        // A close we asked for (4403 from `connection_init`) over the engine's.
                        let (code, reason) = close_rx.try_recv().unwrap_or((code, reason));
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                };
                if sink.send(frame).await.is_err() {
                    return;
                }
            }
        };
        // The writer ends the connection (the engine finished, or a close was sent); the reader
        // ends when the client's side does, which ends the engine's input and then the writer.
        let reader = std::pin::pin!(reader);
        let mut writer = std::pin::pin!(writer);
        tokio::select! {
            _ = &mut writer => {}
            _ = reader => writer.await,
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = serde_json::Result<T>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|m| m.map(Ok)))
}

/// The id of a `complete` message of the server, the end of an operation.
fn completed_id(text: &str) -> Option<String> {
    // async-graphql writes the type first; only complete messages are parsed.
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(value.get("id")?.as_str()?.to_owned())
}

/// Reads the client's messages, checks them against the protocol and passes them on; on a
/// violation asks the writer to close and stops.
async fn read(
    mut source: futures_util::stream::SplitStream<WebSocket>,
    to_engine: mpsc::Sender<Box<ClientMessage>>,
    close: mpsc::Sender<(u16, String)>,
    running: Running,
    init_timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + init_timeout;
    let mut initialised = false;
    loop {
        let next = if initialised {
            source.next().await
        } else {
            match tokio::time::timeout_at(deadline, source.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = close
                        .send((
                            close::INIT_TIMEOUT,
                            "connection initialisation timeout".into(),
                        ))
                        .await;
                    return;
                }
            }
        };
        let bytes = match next {
            Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
            Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
        };
        let message = match ClientMessage::from_bytes(bytes) {
            Ok(m) => m,
            Err(_) => {
                let _ = close
                    .send((close::BAD_MESSAGE, "invalid message".into()))
                    .await;
                return;
            }
        };
        let refusal = match &message {
            ClientMessage::ConnectionInit { .. } => {
                initialised = true;
                None
            }
            ClientMessage::Start { .. } if !initialised => {
                Some((close::UNAUTHORIZED, "Unauthorized".to_owned()))
            }
            ClientMessage::Start { id, .. } => {
                if running_ids(&running).insert(id.clone()) {
                    None
                } else {
                    Some((
                        close::DUPLICATE_ID,
                        format!("Subscriber for {id} already exists"),
                    ))
                }
            }
            ClientMessage::Stop { id } => {
                running_ids(&running).remove(id);
                None
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            let _ = close.send(refusal).await;
            return;
        }
        if to_engine.send(Box::new(message)).await.is_err() {
            return;
        }
    }
}
