//! A client connection: login ([`login`]) then the forwarding loop ([`session`]).

mod cancelled;
mod idle;
mod login;
mod park;
mod reply;
mod session;
mod slow;

pub use login::{handle_client, ClientSlot};
pub use park::Parking;
