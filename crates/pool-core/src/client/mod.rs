//! A client connection: login ([`login`]) then the forwarding loop ([`session`]).

mod login;
mod reply;
mod session;

pub use login::handle_client;
