//! One module per route.

pub mod auth;
pub mod classes;
pub mod classroom;
pub mod home;
pub mod not_found;
pub mod people;
pub mod status;
