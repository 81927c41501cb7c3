//! One module per route.

pub mod auth;
pub mod chat;
pub mod classes;
pub mod classroom;
pub mod home;
pub mod interaction;
pub mod layout;
pub mod not_found;
pub mod panel;
pub mod people;
pub mod polls;
pub mod qa;
pub mod recording;
pub mod status;
pub mod vod;
