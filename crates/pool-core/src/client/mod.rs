//! A client connection: login ([`login`]) then the forwarding loop ([`session`]).

mod login;
mod session;
mod reply;

pub use login::handle_client;
