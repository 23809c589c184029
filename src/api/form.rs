//! Request bodies and query strings the API reads: `application/x-www-form-urlencoded` pairs
//! (also the query string), `multipart/form-data` parts (bounded: at most [`MAX_PARTS`] parts,
//! each header block at most 8 KiB; the body itself is bounded by the HTTP server), and
//! percent-decoding. Malformed input is an error, never a panic.

/// Most parts a multipart body may have.
pub const MAX_PARTS: usize = 64;

/// One multipart part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// Percent-decodes `s` (`+` as space when `plus`); None if an escape is malformed.
pub fn percent_decode(s: &str, plus: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `a=1&b=2` pairs, decoded; None if any escape is malformed or not UTF-8.
pub fn urlencoded(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = String::from_utf8(percent_decode(k, true)?).ok()?;
            let v = String::from_utf8(percent_decode(v, true)?).ok()?;
            Some((k, v))
        })
        .collect()
}

/// The first value of `key` in pairs.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 200)
            .then(|| v.to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// The parts of a multipart body; Err says what is wrong.
pub fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0).ok_or("multipart: no boundary")? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if parts.len() == MAX_PARTS {
            return Err(format!("multipart: more than {MAX_PARTS} parts"));
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("multipart: malformed boundary line".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart: part without headers end")?;
        if head_end - pos > 8192 {
            return Err("multipart: part headers over 8 KiB".into());
        }
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "multipart: headers not UTF-8")?;
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for p in v.split(';').skip(1) {
                if let Some((pk, pv)) = p.trim().split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim() {
                        "name" => name = Some(pv),
                        "filename" => filename = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        let data_start = head_end + 4;
        let mut end_delim = b"\r\n".to_vec();
        end_delim.extend_from_slice(&delim);
        let data_end =
            find(body, &end_delim, data_start).ok_or("multipart: part not terminated")?;
        parts.push(Part {
            name: name.ok_or("multipart: part without a name")?,
            filename,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + end_delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_bad_ones_fail() {
        let p = urlencoded("hashes=a%7Cb&filter=all&x=1+2").unwrap();
        assert_eq!(get(&p, "hashes"), Some("a|b"));
        assert_eq!(get(&p, "x"), Some("1 2"));
        assert!(urlencoded("a=%zz").is_none());
        assert!(urlencoded("a=%f").is_none());
        let ct = "multipart/form-data; boundary=XyZ";
        assert_eq!(boundary(ct).as_deref(), Some("XyZ"));
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n/d\r\n--XyZ\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"a.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\nd4:infoe\r\n--XyZ--\r\n";
        let parts = multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"/d");
        assert_eq!(parts[1].filename.as_deref(), Some("a.torrent"));
        assert_eq!(parts[1].data, b"d4:infoe");
        for bad in [
            &b"--XyZ\r\nno end"[..],
            b"nothing",
            b"--XyZ\r\n\r\n\r\nx\r\n--XyZ--",
        ] {
            assert!(multipart(bad, "XyZ").is_err());
        }
    }
}
