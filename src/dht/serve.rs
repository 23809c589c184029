//! The node's side as a server: answering queries (rate limit, token checks, the
//! reply built within [`MAX_REPLY`], the querier pinged to learn of it) and the periodic
//! maintenance (token rotation, peer expiry, pings of questionable nodes, bucket refresh,
//! bootstrap again when the table is empty).

use super::*;

impl Node {
    pub(super) fn handle_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Vec<u8>,
        id: NodeId,
        ro: bool,
        query: Query,
    ) {
        if self.config.read_only {
            self.stats.dropped_read_only += 1;
            return;
        }
        if !self.limiter.allow(from.ip().to_canonical(), now) {
            self.stats.queries_refused_rate_limit += 1;
            return;
        }
        if id == self.id {
            self.stats.dropped_own_id += 1;
            return;
        }
        let fam = self.config.family;
        let nodes_reply = |table: &Table, target: &NodeId, own: NodeId| {
            let nodes = table.closest(target, K, now);
            let mut r = Response {
                id: own,
                ..Response::default()
            };
            match fam {
                Family::V4 => r.nodes = nodes,
                Family::V6 => r.nodes6 = nodes,
            }
            r
        };
        let body = match query {
            Query::Ping => {
                self.stats.queries_in_ping += 1;
                Body::Response(Response {
                    id: self.id,
                    ..Response::default()
                })
            }
            Query::FindNode { target, .. } => {
                self.stats.queries_in_find_node += 1;
                Body::Response(nodes_reply(&self.table, &target, self.id))
            }
            Query::GetPeers { info_hash, .. } => {
                self.stats.queries_in_get_peers += 1;
                let values = self.store.peers(&info_hash.0, max_values(fam), now);
                let mut r = if values.is_empty() {
                    nodes_reply(&self.table, &info_hash, self.id)
                } else {
                    Response {
                        id: self.id,
                        values,
                        ..Response::default()
                    }
                };
                r.token = Some(self.tokens.token(from.ip()).to_vec());
                Body::Response(r)
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                token,
                implied_port,
            } => {
                self.stats.queries_in_announce_peer += 1;
                let port = if implied_port { from.port() } else { port };
                if !self.tokens.valid(from.ip(), &token) {
                    self.stats.announces_bad_token += 1;
                    Body::Error {
                        code: 203,
                        message: b"bad token".to_vec(),
                    }
                } else if port == 0 {
                    Body::Error {
                        code: 203,
                        message: b"bad port".to_vec(),
                    }
                } else {
                    self.store
                        .announce(info_hash.0, SocketAddr::new(from.ip(), port), now);
                    self.stats.stored_info_hashes = self.store.hashes() as u64;
                    self.stats.stored_peers = self.store.peer_count() as u64;
                    Body::Response(Response {
                        id: self.id,
                        ..Response::default()
                    })
                }
            }
            Query::Unknown(_) => {
                self.stats.queries_in_unknown += 1;
                Body::Error {
                    code: 204,
                    message: b"method unknown".to_vec(),
                }
            }
        };
        let reply = krpc::encode(&Message {
            tid,
            ip: Some(from),
            body,
        });
        debug_assert!(reply.len() <= MAX_REPLY, "reply of {} bytes", reply.len());
        if self.transmit(from, reply) {
            self.stats.queries_answered += 1;
        }
        // Learn about the querier: ping it, and add it when it answers.
        let verifying = self
            .txns
            .values()
            .filter(|t| t.kind == TxnKind::Verify)
            .count();
        if !ro
            && verifying < MAX_VERIFY
            && !self.table.contains(&id)
            && !self.txns.values().any(|t| t.addr == from)
        {
            self.ping(id, from, TxnKind::Verify, now);
        }
    }

    pub(super) fn maintain(&mut self, now: Instant) {
        self.tokens.maybe_rotate(&mut self.rng, now);
        self.store.expire(now);
        self.stats.stored_info_hashes = self.store.hashes() as u64;
        self.stats.stored_peers = self.store.peer_count() as u64;
        for (id, addr) in self.table.to_ping(now, PING_EVERY, PINGS_PER_ROUND) {
            if !self.txns.values().any(|t| t.addr == addr) {
                self.ping(id, addr, TxnKind::Ping, now);
            }
        }
        let running = |k: Option<u64>, lookups: &HashMap<u64, Lookup>| {
            k.is_some_and(|k| lookups.contains_key(&k))
        };
        if self.table.is_empty()
            && !self.routers.is_empty()
            && !running(self.bootstrap_lookup, &self.lookups)
        {
            self.bootstrap(&[], now);
            return;
        }
        if !running(self.refresh_lookup, &self.lookups) {
            if let Some(&i) = self.table.stale_buckets(now, REFRESH_AFTER).first() {
                self.table.touch(i, now);
                let target = self.id.random_in_bucket(i, &mut self.rng);
                self.refresh_lookup = self.start_lookup(target, Kind::FindNode, false, now);
                if let Some(k) = self.refresh_lookup {
                    self.drive(k, now);
                }
            }
        }
    }
}
