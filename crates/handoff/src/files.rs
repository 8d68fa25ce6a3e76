//! Route files read from the plan's folder. The core checks paths lexically; this also refuses
//! symlinks that lead out of the folder, since the real path is only known on disk.

use handoff_core::plan::RouteFiles;
use std::path::{Path, PathBuf};

pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    /// Route files relative to the folder holding `plan`.
    pub fn beside(plan: &Path) -> Self {
        let root = plan
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let root = if root.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            root
        };
        Self { root }
    }
}

impl RouteFiles for DirFiles {
    fn read(&self, relative: &Path) -> Result<String, String> {
        let path = self.root.join(relative);
        let shown = relative.display();
        let real = path
            .canonicalize()
            .map_err(|e| format!("cannot read route file `{shown}`: {e}"))?;
        let root = self
            .root
            .canonicalize()
            .map_err(|e| format!("cannot read the plan's folder: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "route file `{shown}` leads outside the plan's folder; keep route files beside the plan"
            ));
        }
        // A FIFO or a device would block the check forever (or never end): regular files only.
        let meta = std::fs::metadata(&real)
            .map_err(|e| format!("cannot read route file `{shown}`: {e}"))?;
        if !meta.is_file() {
            return Err(format!(
                "route file `{shown}` is not a regular file (a folder, a pipe or a device)"
            ));
        }
        std::fs::read_to_string(&real).map_err(|e| format!("cannot read route file `{shown}`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_file_that_is_a_pipe_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("plan.toml");
        let fifo = dir.path().join("route.gpx");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO for reading blocks until a writer comes: this would hang before.
        let err = DirFiles::beside(&plan)
            .read(Path::new("route.gpx"))
            .unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let folder = DirFiles::beside(&plan).read(Path::new(".")).unwrap_err();
        assert!(folder.contains("not a regular file"), "{folder}");
    }
}
