//! The BEP 19 web seed (HTTP seeding) sans I/O: [`parse_head`] reads a request head,
//! [`split_target`] turns its target into a torrent name and a path inside it, and [`respond`]
//! answers from a torrent's [`WebIndex`] (status, head bytes, and the stream range to send),
//! with [`WebStats`] for the counters. No sockets, no clock, no threads, no file system: the
//! driver passes the time in and asks the torrent which ranges are servable.

pub mod date;
pub mod request;
pub mod respond;
pub mod stats;
pub mod target;

pub use request::{parse_head, HeadError, Method, Parsed, Request};
pub use respond::{error_answer, error_for, respond, Answer, Body, Servable, WebFile, WebIndex};
pub use stats::{Status, WebStats};
pub use target::{split_target, Refused, Target};
