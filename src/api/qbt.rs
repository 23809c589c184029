//! The qBittorrent Web API v2 subset under `/api/v2/` (to be filled in).

use super::Api;
use crate::http::{Reply, Request};

pub fn route(_api: &Api, _req: &Request) -> Reply {
    Reply::text(hyper::StatusCode::NOT_FOUND, "not found\n")
}
