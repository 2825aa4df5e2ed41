//! A client connection: login ([`login`]) then the forwarding loop ([`session`]).

mod idle;
mod login;
mod reply;
mod session;
mod slow;

pub use login::handle_client;
