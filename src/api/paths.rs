//! Confines paths given to the API to `api.data_roots`: a path is resolved (symlinks and `..`
//! followed by the kernel, through `canonicalize`) and must then lie inside one of the roots
//! (also resolved). A path that does not exist is refused, so nothing can be made to appear
//! inside a root later through a link that escapes it.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Roots(Vec<PathBuf>);

impl Roots {
    /// The configured roots, or the working directory if none (never `/`: a server started
    /// from `/` with no roots seeds nothing through the API).
    pub fn new(configured: &[PathBuf]) -> Roots {
        let list: Vec<PathBuf> = if configured.is_empty() {
            std::env::current_dir().into_iter().collect()
        } else {
            configured.to_vec()
        };
        Roots(
            list.iter()
                .filter_map(|p| p.canonicalize().ok())
                .filter(|p| p != Path::new("/") || !configured.is_empty())
                .collect(),
        )
    }

    pub fn list(&self) -> &[PathBuf] {
        &self.0
    }

    /// `path` resolved, if it exists and is inside a root.
    pub fn confine(&self, path: &Path) -> Result<PathBuf, String> {
        if !path.is_absolute() {
            return Err(format!("{}: give an absolute path", path.display()));
        }
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.0.iter().any(|r| real.starts_with(r)) {
            Ok(real)
        } else {
            Err(format!(
                "{} is outside api.data_roots ({})",
                path.display(),
                self.0
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_symlinks_cannot_leave_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root));
        assert!(roots.confine(&root.join("in")).is_ok());
        assert!(roots.confine(&root.join("in/../../outside")).is_err());
        assert!(roots.confine(&root.join("escape")).is_err());
        assert!(roots.confine(&root.join("missing")).is_err());
        assert!(roots.confine(Path::new("in")).is_err(), "relative");
        assert!(roots
            .confine(Path::new("/etc"))
            .unwrap_err()
            .contains("api.data_roots"));
    }
}
