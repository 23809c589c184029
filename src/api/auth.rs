//! The API's bearer token: read from `api.token_file`, or made at the first start in the state
//! directory (32 random bytes as hex, mode 0600) and its path logged (never the token). A
//! request is let in by `Authorization: Bearer TOKEN` or the page's cookie holding the token;
//! comparison takes the same time whatever the bytes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the cookie the page (and `/?token=`) sets.
pub const COOKIE: &str = "uringseed_token";

#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(s: String) -> Token {
        Token(s)
    }

    /// The token of `configured` (which must exist), or of `<state_dir>/api-token` (made if
    /// missing). Errors name the file.
    pub fn load_or_create(
        configured: &Path,
        state_dir: Option<&Path>,
    ) -> Result<(Token, PathBuf), String> {
        if !configured.as_os_str().is_empty() {
            return read(configured).map(|t| (t, configured.to_path_buf()));
        }
        let dir = state_dir.ok_or(
            "api: no state directory for the token (set api.token_file or server.state_dir)",
        )?;
        let path = dir.join("api-token");
        if path.exists() {
            return read(&path).map(|t| (t, path));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("api: cannot create {}: {e}", dir.display()))?;
        let mut bytes = [0u8; 32];
        getrandom(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Written whole to a private temporary file, then linked into place: a second server
        // starting at the same moment either links first or reads a complete token.
        let mut tag = [0u8; 8];
        getrandom(&mut tag);
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".api-token.{tag}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("api: cannot create {}: {e}", tmp.display()))?;
        let written = writeln!(f, "{token}").and_then(|_| f.sync_all());
        drop(f);
        if let Err(e) = written {
            // A full disk: leave nothing behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("api: cannot write {}: {e}", tmp.display()));
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return read(&path).map(|t| (t, path));
            }
            Err(e) => return Err(format!("api: cannot create {}: {e}", path.display())),
        }
        tracing::info!("api: made a new token in {}", path.display());
        Ok((Token(token), path))
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether a request carries this token (bearer header or cookie).
    pub fn admits(&self, authorization: Option<&str>, cookie: Option<&str>) -> bool {
        if let Some(t) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            return self.matches(t.trim());
        }
        cookie_value(cookie, COOKIE).is_some_and(|t| self.matches(t))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn read(path: &Path) -> Result<Token, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("api.token_file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "api: {} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = crate::fsread::read_regular_string(path, 64 << 10)
        .map_err(|e| format!("api.token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(format!(
            "api.token_file {}: the token must be at least 16 characters",
            path.display()
        ));
    }
    if token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ';')
    {
        return Err(format!(
            "api.token_file {}: the token must be one line without spaces or ';'",
            path.display()
        ));
    }
    Ok(Token(token.to_string()))
}

pub fn getrandom(out: &mut [u8]) {
    let mut filled = 0;
    while filled < out.len() {
        // SAFETY: getrandom writes at most len - filled bytes at the given position.
        let r =
            unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), out.len() - filled, 0) };
        if r > 0 {
            filled += r as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (t, path) = Token::load_or_create(Path::new(""), Some(dir.path())).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, _) = Token::load_or_create(Path::new(""), Some(dir.path())).unwrap();
        assert!(
            again.matches(t.expose()),
            "the same token on the next start"
        );
        assert!(t.admits(Some(&format!("Bearer {}", t.expose())), None));
        assert!(!t.admits(Some("Bearer nope"), None));
        assert!(!t.admits(None, None));
        let cookie = format!("a=b; {COOKIE}={}", t.expose());
        assert!(t.admits(None, Some(&cookie)));
        assert!(!t.admits(None, Some("uringseed_token=x")));
        assert!(!format!("{t:?}").contains(t.expose()), "never printed");
    }

    #[test]
    fn a_configured_token_file_must_exist_and_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        assert!(Token::load_or_create(&p, None).unwrap_err().contains("tok"));
        std::fs::write(&p, "short\n").unwrap();
        assert!(Token::load_or_create(&p, None).unwrap_err().contains("16"));
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        let (t, _) = Token::load_or_create(&p, None).unwrap();
        assert!(t.matches("0123456789abcdef0123"));
    }

    #[test]
    fn servers_starting_together_agree_on_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let tokens: Vec<String> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    Token::load_or_create(Path::new(""), Some(&d)).map(|(t, _)| t.0)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap().expect("every start gets the token"))
            .collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]));
    }
}
