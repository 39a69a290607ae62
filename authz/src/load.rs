//! Loading policy documents from files, directories and strings.

use std::path::{Path, PathBuf};

use crate::error::LoadError;
use crate::model::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::wire::{self, Document};

/// Something Istio accepts but warns about (V-2), or an assumption the
/// loader made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Warning {
    /// The file holding the document.
    pub file: PathBuf,
    /// Zero-based index of the document in the file.
    pub document: usize,
    /// Path of the field concerned.
    pub field: String,
    /// What the warning is about.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: document {}: {}: {}",
            self.file.display(),
            self.document,
            self.field,
            self.message
        )
    }
}

/// A validated set of security policies, all loaded or none.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PolicySet {
    /// Every `AuthorizationPolicy`.
    pub authorization: Vec<AuthorizationPolicy>,
    /// Every `PeerAuthentication`.
    pub peer_authentication: Vec<PeerAuthentication>,
    /// Every `RequestAuthentication`.
    pub request_authentication: Vec<RequestAuthentication>,
    /// Warnings raised while loading.
    pub warnings: Vec<Warning>,
}

/// Splits a multi-document stream at `---` lines, returning each document
/// with its index. A leading empty part (before the first `---`) is not a
/// document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs: Vec<String> = vec![String::new()];
    let mut leading = true;
    for line in text.lines() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            let only_preamble = docs.len() == 1
                && leading
                && docs[0].lines().all(|l| {
                    let t = l.trim();
                    t.is_empty() || t.starts_with('#') || t.starts_with('%')
                });
            if !only_preamble {
                docs.push(String::new());
            }
            leading = false;
            // Keep any content after the marker on the same line.
            let rest = line[3..].trim_start();
            if !rest.is_empty()
                && let Some(last) = docs.last_mut()
            {
                last.push_str(rest);
                last.push('\n');
            }
        } else if line == "..." {
            continue;
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.into_iter().enumerate().collect()
}

impl PolicySet {
    /// Parses a multi-document YAML (or JSON) string; `name` is used in errors.
    pub fn from_yaml_str(name: impl AsRef<Path>, text: &str) -> Result<Self, LoadError> {
        let mut set = PolicySet::default();
        set.add_yaml_str(name.as_ref(), text)?;
        Ok(set)
    }

    /// Loads files and directories (every `.yaml`, `.yml` and `.json` file
    /// directly inside, in name order). Fails as a whole on the first bad
    /// document.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, LoadError> {
        let mut set = PolicySet::default();
        for path in paths {
            let path = path.as_ref();
            let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
                path: path.to_owned(),
                source,
            })?;
            let files = if meta.is_dir() {
                list_dir(path)?
            } else {
                vec![path.to_owned()]
            };
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
                    path: file.clone(),
                    source,
                })?;
                set.add_yaml_str(&file, &text)?;
            }
        }
        Ok(set)
    }

    fn add_yaml_str(&mut self, file: &Path, text: &str) -> Result<(), LoadError> {
        // Convert into a scratch set first so a bad document leaves `self` untouched.
        let mut scratch = PolicySet::default();
        for (document, body) in split_documents(text) {
            let value: serde_json::Value =
                serde_saphyr::from_str_with_options(&body, yaml_options()).map_err(|e| {
                    LoadError::Syntax {
                        file: file.to_owned(),
                        document,
                        message: e.to_string(),
                    }
                })?;
            if value.is_null() {
                continue;
            }
            let mut warnings = Vec::new();
            let doc = wire::convert(&value, &mut warnings).map_err(|error| LoadError::Invalid {
                file: file.to_owned(),
                document,
                error,
            })?;
            scratch
                .warnings
                .extend(warnings.into_iter().map(|(field, message)| Warning {
                    file: file.to_owned(),
                    document,
                    field,
                    message,
                }));
            match doc {
                Document::Authorization(p) => scratch.authorization.push(p),
                Document::Peer(p) => scratch.peer_authentication.push(p),
                Document::RequestAuth(p) => scratch.request_authentication.push(p),
            }
        }
        self.authorization.append(&mut scratch.authorization);
        self.peer_authentication
            .append(&mut scratch.peer_authentication);
        self.request_authentication
            .append(&mut scratch.request_authentication);
        self.warnings.append(&mut scratch.warnings);
        Ok(())
    }
}

/// YAML 1.2 booleans only: `n`, `yes` or `on` stay strings, so a label or
/// a name is never silently turned into a boolean.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::split_documents;

    #[test]
    fn documents_are_numbered_from_zero_including_empty_ones() {
        let docs = split_documents("---\na: 1\n---\n---\nb: 2\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].1, "a: 1\n");
        assert_eq!(docs[1].1, "");
        assert_eq!(docs[2].1, "b: 2\n");
        let docs = split_documents("a: 1\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].1, "b: 2\n");
    }
}
