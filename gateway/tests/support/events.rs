//! A GraphQL subscription over the websocket (graphql-transport-ws), as a script would open it:
//! its payloads arrive on a channel the test reads with a failure bound.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long an expected event may take (a failure bound, not a synchronisation).
pub const WAIT: Duration = Duration::from_secs(20);

/// The payloads of one subscription field; `{"__typename": "error"|"complete"}` when it ends.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Events {
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an event in time")
            .expect("subscription open")
    }

    /// The next event of a kind, skipping others.
    pub async fn until(&mut self, typename: &str) -> Value {
        loop {
            let e = self.next().await;
            if e["__typename"] == typename {
                return e;
            }
        }
    }
}

/// Subscribes to `query` (its root `field`) on the gateway at `base` with an API `token`.
pub async fn subscribe(
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
    field: &'static str,
) -> Events {
    let mut request = format!("{}/graphql/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
                "payload": { "query": query, "variables": variables } })
        .to_string(),
    ))
    .await
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("next") => {
                    let _ = tx.send(value["payload"]["data"][field].clone());
                }
                Some("error") | Some("complete") => {
                    let _ = tx.send(json!({ "__typename": value["type"] }));
                    return;
                }
                _ => {}
            }
        }
    });
    Events { rx }
}
