//! One GraphQL subscription over a websocket (`graphql-transport-ws`), authenticated by the
//! session cookie of the page. When the socket drops, it reconnects (1 s, then up to 5 s apart)
//! and subscribes again, with its variables as they are then (the caller may change them, e.g.
//! to resume after the last event it got, with [`Subscription::set_variable`]); the caller
//! learns of both through [`WsStatus`].

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, WebSocket};

/// What the connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsStatus {
    Connecting,
    Open,
    /// Dropped; trying again.
    Reconnecting,
    /// Closed for good (the subscription ended or [`Subscription::close`] was called).
    Closed,
}

struct Inner {
    query: String,
    variables: serde_json::Value,
    /// Shared so that it is called with no borrow of the subscription held (it may change or
    /// close the subscription).
    on_data: Rc<dyn Fn(serde_json::Value)>,
    on_error: Box<dyn Fn(String)>,
    on_status: Box<dyn Fn(WsStatus)>,
    socket: Option<WebSocket>,
    closed: bool,
    attempts: u32,
    /// Keeps the event handlers alive as long as the socket.
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

/// A live subscription. Dropping it does not close it; call [`Subscription::close`].
#[derive(Clone)]
pub struct Subscription(Rc<RefCell<Inner>>);

impl Subscription {
    pub fn start(
        query: &str,
        variables: serde_json::Value,
        on_data: impl Fn(serde_json::Value) + 'static,
        on_error: impl Fn(String) + 'static,
        on_status: impl Fn(WsStatus) + 'static,
    ) -> Subscription {
        let sub = Subscription(Rc::new(RefCell::new(Inner {
            query: query.to_owned(),
            variables,
            on_data: Rc::new(on_data),
            on_error: Box::new(on_error),
            on_status: Box::new(on_status),
            socket: None,
            closed: false,
            attempts: 0,
            handlers: Vec::new(),
        })));
        sub.connect();
        sub
    }

    /// Sets a variable for the next (re)subscription; the current one is not affected.
    pub fn set_variable(&self, name: &str, value: serde_json::Value) {
        if let Some(vars) = self.0.borrow_mut().variables.as_object_mut() {
            vars.insert(name.to_owned(), value);
        }
    }

    /// Closes the socket and stops reconnecting.
    pub fn close(&self) {
        let socket = {
            let mut inner = self.0.borrow_mut();
            inner.closed = true;
            inner.socket.take()
        };
        if let Some(s) = socket {
            let _ = s.close();
        }
        (self.0.borrow().on_status)(WsStatus::Closed);
    }

    /// Drops the socket as a network failure would (the subscription reconnects). For tests and
    /// for the "reconnect" button.
    pub fn drop_connection(&self) {
        let socket = self.0.borrow().socket.clone();
        if let Some(s) = socket {
            let _ = s.close();
        }
    }

    fn connect(&self) {
        let location = web_sys::window().expect("window").location();
        let scheme = if location.protocol().ok().as_deref() == Some("https:") {
            "wss"
        } else {
            "ws"
        };
        let host = location.host().unwrap_or_default();
        let url = format!("{scheme}://{host}/graphql/ws");
        let socket = match WebSocket::new_with_str(&url, "graphql-transport-ws") {
            Ok(s) => s,
            Err(_) => {
                self.retry();
                return;
            }
        };
        {
            let inner = self.0.borrow();
            (inner.on_status)(if inner.attempts == 0 {
                WsStatus::Connecting
            } else {
                WsStatus::Reconnecting
            });
        }
        let on_open = {
            let (sub, socket) = (self.clone(), socket.clone());
            Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
                let _ = socket.send_with_str(
                    &serde_json::json!({ "type": "connection_init", "payload": {} }).to_string(),
                );
                let inner = sub.0.borrow();
                let _ = socket.send_with_str(
                    &serde_json::json!({
                        "id": "1",
                        "type": "subscribe",
                        "payload": { "query": inner.query, "variables": inner.variables },
                    })
                    .to_string(),
                );
            })
        };
        let on_message = {
            let sub = self.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let Some(text) = event
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                else {
                    return;
                };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                    return;
                };
                match value["type"].as_str() {
                    Some("connection_ack") => {
                        let mut inner = sub.0.borrow_mut();
                        inner.attempts = 0;
                        (inner.on_status)(WsStatus::Open);
                    }
                    Some("next") => {
                        let payload = &value["payload"];
                        if let Some(error) = payload["errors"].get(0) {
                            let message = error["message"].as_str().unwrap_or("error").to_owned();
                            (sub.0.borrow().on_error)(message);
                        } else {
                            let data = payload["data"].clone();
                            let on_data = Rc::clone(&sub.0.borrow().on_data);
                            on_data(data);
                        }
                    }
                    Some("error") => {
                        let message = value["payload"][0]["message"]
                            .as_str()
                            .unwrap_or("subscription refused")
                            .to_owned();
                        (sub.0.borrow().on_error)(message);
                    }
                    Some("complete") => {
                        sub.0.borrow_mut().closed = true;
                        (sub.0.borrow().on_status)(WsStatus::Closed);
                    }
                    Some("ping") => {
                        if let Some(s) = &sub.0.borrow().socket {
                            let _ = s.send_with_str(r#"{"type":"pong"}"#);
                        }
                    }
                    _ => {}
                }
            })
        };
        let on_close = {
            let sub = self.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
                let closed = sub.0.borrow().closed;
                if !closed {
                    sub.retry();
                }
            })
        };
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let mut inner = self.0.borrow_mut();
        inner.handlers = vec![on_open, on_message, on_close];
        inner.socket = Some(socket);
    }

    fn retry(&self) {
        let delay = {
            let mut inner = self.0.borrow_mut();
            inner.socket = None;
            inner.attempts += 1;
            (inner.on_status)(WsStatus::Reconnecting);
            (1000 * inner.attempts).min(5000) as i32
        };
        let sub = self.clone();
        let again = Closure::once_into_js(move || {
            if !sub.0.borrow().closed {
                sub.connect();
            }
        });
        let _ = web_sys::window()
            .expect("window")
            .set_timeout_with_callback_and_timeout_and_arguments_0(again.unchecked_ref(), delay);
    }
}
