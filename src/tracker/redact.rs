//! Tracker URLs as they may be shown: private trackers put a passkey in the path
//! (`http://t.example/a1b2c3.../announce`) or the query (`?passkey=`, `?pk=`, `?authkey=`,
//! `?torrent_pass=`...), and an announce URL carries our `peer_id` and `key`. [`redact`] keeps
//! the scheme, host, port, the last path segment (unless it looks like a key itself) and the
//! query's parameter names; everything else becomes `<redacted>`. [`redact_in`] does that to
//! every URL inside a message (an HTTP client's error text).
//!
//! Pure text functions; every log line and error message of the tracker module that names a
//! tracker goes through them.

/// What stands in for a hidden part.
pub const REDACTED: &str = "<redacted>";

/// `http://t.example:2710/<redacted>/announce?passkey=<redacted>&info_hash=<redacted>` for
/// `http://t.example:2710/a1b2c3d4e5f6/announce?passkey=s3cr3t&info_hash=%AB...`.
pub fn redact(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return redact_unparsed(url);
    };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(REDACTED);
        out.push('@');
    }
    match parsed.host_str() {
        Some(host) => out.push_str(host),
        None => return format!("{}:{REDACTED}", parsed.scheme()),
    }
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.collect())
        .unwrap_or_default();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if i == 0 && seg.is_empty() && segments.len() == 1 {
            // Just "/" (or no path at all).
            break;
        }
        out.push('/');
        if i == last && !looks_like_a_key(seg) {
            out.push_str(seg);
        } else {
            out.push_str(REDACTED);
        }
    }
    if let Some(query) = parsed.query() {
        let parts: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((name, _)) if !looks_like_a_key(name) => format!("{name}={REDACTED}"),
                _ => REDACTED.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// A URL that does not parse: its scheme and host at most.
fn redact_unparsed(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.chars().all(is_scheme_char) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let host = authority.rsplit('@').next().unwrap_or_default();
            let user = if authority.contains('@') {
                format!("{REDACTED}@")
            } else {
                String::new()
            };
            let tail = if end < rest.len() {
                format!("/{REDACTED}")
            } else {
                String::new()
            };
            format!("{scheme}://{user}{host}{tail}")
        }
        _ => REDACTED.to_string(),
    }
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+-.".contains(c)
}

/// A path segment or name made of 16 or more letters, digits, `-` and `_` (hex or base64
/// keys), or of percent-escaped bytes: not a word like `announce` or `announce.php`.
fn looks_like_a_key(s: &str) -> bool {
    let keyish = s.len() >= 16
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    keyish || s.contains('%')
}

/// `text` with every URL in it (a scheme, `://`, up to the next space or quote) redacted.
pub fn redact_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_scheme_char(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}`".contains(c))
            .map_or(rest.len(), |n| at + n);
        // A URL ending a sentence keeps its full stop or comma outside.
        let url_end = rest[..end]
            .trim_end_matches(|c: char| ".,;:".contains(c))
            .len()
            .max(at + 3);
        out.push_str(&rest[..start]);
        if start == at {
            // "://" without a scheme in front: not a URL.
            out.push_str(&rest[at..url_end]);
        } else {
            out.push_str(&redact(&rest[start..url_end]));
        }
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_keys_and_query_values_never_survive() {
        let cases = [
            (
                "http://t.example/a1b2c3d4e5f6a7b8c9d0e1f2/announce",
                "http://t.example/<redacted>/announce",
            ),
            (
                "https://t.example:8443/announce.php?passkey=0123456789abcdef",
                "https://t.example:8443/announce.php?passkey=<redacted>",
            ),
            (
                "http://t.example/tracker/announce?pk=abc&key=1f2e&authkey=X&torrent_pass=Y",
                "http://t.example/<redacted>/announce?pk=<redacted>&key=<redacted>\
                 &authkey=<redacted>&torrent_pass=<redacted>",
            ),
            // A full announce: peer_id, key and the rest.
            (
                "http://t.example:6969/announce?info_hash=%12%34&peer_id=-US0001-abcdefghijkl\
                 &port=6881&key=0000beef&event=started",
                "http://t.example:6969/announce?info_hash=<redacted>&peer_id=<redacted>\
                 &port=<redacted>&key=<redacted>&event=<redacted>",
            ),
            // The passkey as the last segment.
            (
                "http://t.example/announce/0123456789abcdef0123",
                "http://t.example/<redacted>/<redacted>",
            ),
            (
                "udp://tracker.example:1337/announce",
                "udp://tracker.example:1337/announce",
            ),
            ("udp://tracker.example:1337", "udp://tracker.example:1337"),
            ("http://t.example/", "http://t.example"),
            (
                "http://[::1]:8080/x/announce",
                "http://[::1]:8080/<redacted>/announce",
            ),
            (
                "http://user:secretpw@t.example/announce?bare",
                "http://<redacted>@t.example/announce?<redacted>",
            ),
            (
                "http://t.example/announce?0123456789abcdef0123=1#frag",
                "http://t.example/announce?<redacted>",
            ),
            (
                "http://t.example/%70zz9ZZ/announce",
                "http://t.example/<redacted>/announce",
            ),
            (
                "http://t.example/dir%2Fsecret",
                "http://t.example/<redacted>",
            ),
            ("not a url with s3cr3t", "<redacted>"),
            (
                "http://bad host/s3cr3t?pk=s3cr3t",
                "http://bad host/<redacted>",
            ),
            (
                "wss://user:pw@bad^host/s3cr3t",
                "wss://<redacted>@bad^host/<redacted>",
            ),
        ];
        for (url, want) in cases {
            let got = redact(url);
            assert_eq!(got, want, "{url}");
            for secret in [
                "a1b2c3d4e5f6",
                "0123456789abcdef",
                "abcdefghijkl",
                "beef",
                "secretpw",
                "s3cr3t",
                "zz9ZZ",
            ] {
                assert!(!got.contains(secret), "{url} -> {got}");
            }
        }
    }

    #[test]
    fn urls_inside_messages_are_redacted_and_the_rest_kept() {
        let msg = "http://t.example/abcdefabcdefabcdef00/announce?passkey=zz&peer_id=-US: \
                   Connection Failed: Connect error: connection refused (os error 111)";
        assert_eq!(
            redact_in(msg),
            "http://t.example/<redacted>/announce?passkey=<redacted>&peer_id=<redacted>: \
             Connection Failed: Connect error: connection refused (os error 111)"
        );
        assert_eq!(
            redact_in("redirect to 'https://x.example/p/k?a=1', then \"udp://u:1/k/announce\"."),
            "redirect to 'https://x.example/<redacted>/k?a=<redacted>', then \
             \"udp://u:1/<redacted>/announce\"."
        );
        assert_eq!(
            redact_in("no url here :// at all"),
            "no url here :// at all"
        );
        assert_eq!(redact_in(""), "");
    }
}
