//! The URLs a distribution point writes into the torrents it makes (`serve PATH --webseed ADDR
//! --tracker-listen ADDR --public-url URL`): the web seed base for `url-list` (BEP 19) and the
//! built-in tracker's announce URLs (HTTP and UDP, one tier).
//!
//! Pure: it takes the addresses and the public URL and returns strings; it binds nothing.

use std::net::SocketAddr;

/// What a made torrent should carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// `url-list` entries (each ends in `/`: clients append the torrent's name).
    pub web_seeds: Vec<String>,
    /// One tracker tier (HTTP first, then UDP), or none.
    pub tracker_tier: Vec<String>,
}

/// The URLs for a web seed listening on `webseed` and a tracker on `tracker`, as reachable at
/// `public` (`http[s]://HOST[:PORT][/PREFIX]`).
///
/// - Web seed: `public` itself when it names a port or a path (a reverse proxy in front),
///   else `public`'s host with the web seed's port.
/// - Tracker: `public`'s host with the tracker's port, `http://…/announce` and
///   `udp://…/announce`.
/// - With no `public`: the listen address itself, when it is a specific one (a wildcard
///   address is not something a client can reach: an error asks for `--public-url`).
pub fn urls(
    public: Option<&str>,
    webseed: Option<SocketAddr>,
    tracker: Option<SocketAddr>,
) -> Result<Published, String> {
    let mut out = Published::default();
    let public = match public {
        Some(p) => Some(parse_public(p)?),
        None => None,
    };
    if let Some(addr) = webseed {
        let base = match &public {
            Some(p) if p.port().is_some() || p.path() != "/" => {
                let mut s = p.as_str().to_string();
                if !s.ends_with('/') {
                    s.push('/');
                }
                s
            }
            Some(p) => format!("{}://{}/", p.scheme(), host_port(p, addr.port())),
            None => format!("http://{}/", specific(addr, "--webseed")?),
        };
        out.web_seeds.push(base);
    }
    if let Some(addr) = tracker {
        let host = match &public {
            Some(p) => host_port(p, addr.port()),
            None => specific(addr, "--tracker-listen")?.to_string(),
        };
        out.tracker_tier.push(format!("http://{host}/announce"));
        out.tracker_tier.push(format!("udp://{host}/announce"));
    }
    Ok(out)
}

fn parse_public(p: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(p).map_err(|e| format!("--public-url {p:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("--public-url {p:?}: must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("--public-url {p:?}: has no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "--public-url {p:?}: may not have a query or fragment"
        ));
    }
    Ok(u)
}

/// `public`'s host (bracketed if IPv6) with `port`.
fn host_port(public: &url::Url, port: u16) -> String {
    match public.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]:{port}"),
        Some(h) => format!("{h}:{port}"),
        None => format!("localhost:{port}"),
    }
}

/// `addr` if a client could connect to it (not 0.0.0.0 or ::).
fn specific(addr: SocketAddr, flag: &str) -> Result<SocketAddr, String> {
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{flag} {addr} listens on every address: give --public-url (the URL clients reach this host at) so the torrent can name it"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_only_public_url_takes_the_listen_ports() {
        let p = urls(
            Some("http://seed.example.org"),
            Some(a("0.0.0.0:8080")),
            Some(a("0.0.0.0:6969")),
        )
        .unwrap();
        assert_eq!(p.web_seeds, ["http://seed.example.org:8080/"]);
        assert_eq!(
            p.tracker_tier,
            [
                "http://seed.example.org:6969/announce",
                "udp://seed.example.org:6969/announce"
            ]
        );
    }

    #[test]
    fn a_proxy_url_with_port_or_path_is_the_web_seed_as_given() {
        let p = urls(
            Some("https://mirror.example.org/pub/iso"),
            Some(a("127.0.0.1:8080")),
            None,
        )
        .unwrap();
        assert_eq!(p.web_seeds, ["https://mirror.example.org/pub/iso/"]);
        assert!(p.tracker_tier.is_empty());
        let p = urls(Some("http://h:81/"), Some(a("127.0.0.1:8080")), None).unwrap();
        assert_eq!(p.web_seeds, ["http://h:81/"]);
    }

    #[test]
    fn without_public_url_a_specific_address_is_used_and_a_wildcard_refused() {
        let p = urls(None, Some(a("127.0.0.1:8080")), Some(a("[::1]:6969"))).unwrap();
        assert_eq!(p.web_seeds, ["http://127.0.0.1:8080/"]);
        assert_eq!(p.tracker_tier[1], "udp://[::1]:6969/announce");
        let e = urls(None, Some(a("0.0.0.0:8080")), None).unwrap_err();
        assert!(e.contains("--public-url"), "{e}");
    }

    #[test]
    fn ipv6_public_host_is_bracketed_and_bad_urls_are_named() {
        let p = urls(Some("http://[2001:db8::1]"), None, Some(a("[::]:6969"))).unwrap();
        assert_eq!(p.tracker_tier[0], "http://[2001:db8::1]:6969/announce");
        for bad in ["ftp://h/", "not a url", "http://h/?q=1"] {
            let e = urls(Some(bad), Some(a("0.0.0.0:1")), None).unwrap_err();
            assert!(e.contains("--public-url"), "{bad}: {e}");
        }
    }
}
