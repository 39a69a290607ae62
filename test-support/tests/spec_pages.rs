//! Every numbered rule the repository names must resolve to a spec page.
//!
//! A rule ID written in Rust, Markdown or Python anywhere in the workspace
//! (`X509-7` in a doc comment, a comment or a message; `x509_7_` in a test
//! name) must have an entry in `docs/spec/spiffe.md` or
//! `docs/spec/istio-authz.md`: a line `- **X509-7** ...` that states the
//! rule and links its upstream section. A new rule ID without an entry fails
//! here, so readers never meet an ID they cannot look up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The spec pages, relative to the workspace root.
const PAGES: [&str; 2] = ["docs/spec/spiffe.md", "docs/spec/istio-authz.md"];

/// The rule families of the two pages: SPIFFE's, then Istio's.
const FAMILIES: &[&str] = &[
    "ID", "TD", "PATH", "SVID", "X509", "JWT", "BUN", "MAP", "FED", "WEB", "SPF", "EP", "WL",
    "WL-FED", "S", "E", "B", "M", "F", "O", "C", "I", "P", "T", "D", "R", "V", "PA", "RA", "Z",
];

/// Text shaped like a rule ID that names something else (elliptic curves).
const NOT_RULES: &[&str] = &["P-256", "P-384", "P-521"];

/// Directories never scanned: build output, VCS data, the pages themselves.
const SKIP_DIRS: &[&str] = &["target", ".git", "corpus", "artifacts"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives one level below the workspace root")
        .to_path_buf()
}

/// The IDs the pages define (`- **ID** ...` at the start of a line), each
/// with its entry's text.
fn defined() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for page in PAGES {
        let path = root().join(page);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("spec page {}: {e}", path.display()));
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("- **")
                && let Some((id, _)) = rest.split_once("**")
            {
                assert!(
                    out.insert(id.to_owned(), line.to_owned()).is_none(),
                    "{id} is defined twice"
                );
                current = Some(id.to_owned());
            } else if let Some(id) = &current
                && line.starts_with("  ")
            {
                let entry = out.get_mut(id).expect("current entry exists");
                entry.push('\n');
                entry.push_str(line);
            } else {
                current = None;
            }
        }
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Rule IDs written in upper case (`X509-7`, `WL-FED-1`, `M-9`) whose
/// family is one of [`FAMILIES`].
fn upper_ids(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_uppercase() || (i > 0 && is_word(b[i - 1])) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit()) {
            j += 1;
        }
        let mut family = &text[i..j];
        if family == "WL" && text[j..].starts_with("-FED-") {
            family = "WL-FED";
            j += 4;
        }
        if j < b.len() && b[j] == b'-' {
            let mut k = j + 1;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            let ends = k == b.len() || !(b[k].is_ascii_alphanumeric() || b[k] == b'_');
            if k > j + 1 && ends && FAMILIES.contains(&family) {
                let id = format!("{family}-{}", &text[j + 1..k]);
                if !NOT_RULES.contains(&id.as_str()) {
                    out.push(id);
                }
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// Rule IDs in function names, written in lower case between underscores:
/// `x509_7_leaf_...` is X509-7, `wl_12_wl_13_...` is WL-12 and WL-13,
/// `wl_fed_1_...` is WL-FED-1.
fn test_name_ids(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (pos, _) in text.match_indices("fn ") {
        if pos > 0 && is_word(text.as_bytes()[pos - 1]) {
            continue;
        }
        let name: String = text[pos + 3..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let tokens: Vec<&str> = name.split('_').collect();
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let mut i = 0;
        while i + 1 < tokens.len() {
            if tokens[i] == "wl"
                && tokens[i + 1] == "fed"
                && tokens.get(i + 2).is_some_and(|t| digits(t))
            {
                out.push(format!("WL-FED-{}", tokens[i + 2]));
                i += 3;
            } else if FAMILIES.contains(&tokens[i].to_ascii_uppercase().as_str())
                && digits(tokens[i + 1])
            {
                out.push(format!(
                    "{}-{}",
                    tokens[i].to_ascii_uppercase(),
                    tokens[i + 1]
                ));
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Every `.rs`, `.md` and `.py` file of the workspace except the pages.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) && path != root().join("docs/spec") {
                files(&path, out);
            }
        } else if [".rs", ".md", ".py"].iter().any(|ext| name.ends_with(ext)) {
            out.push(path);
        }
    }
}

#[test]
fn every_rule_id_in_the_repository_has_a_spec_page_entry() {
    let defined = defined();
    let mut sources = Vec::new();
    files(&root(), &mut sources);
    assert!(
        sources.len() > 50,
        "the walk found the workspace ({} files)",
        sources.len()
    );
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen = 0;
    for path in sources {
        // Binary or non-UTF-8 files hold no rule IDs worth checking.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut ids = upper_ids(&text);
        if path.extension().is_some_and(|e| e == "rs") {
            ids.extend(test_name_ids(&text));
        }
        for id in ids {
            seen += 1;
            if !defined.contains_key(&id) {
                let rel = path.strip_prefix(root()).unwrap_or(&path);
                missing
                    .entry(id)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    assert!(
        seen > 100,
        "the scan found the rule IDs the code uses ({seen})"
    );
    assert!(
        missing.is_empty(),
        "rule IDs without an entry in {PAGES:?} (add `- **ID** statement` with its upstream link): {missing:#?}"
    );
}

#[test]
fn every_page_entry_links_its_upstream_section() {
    let defined = defined();
    assert!(
        defined.len() >= 200,
        "both pages were read ({})",
        defined.len()
    );
    for (id, entry) in &defined {
        assert!(
            entry.contains("Upstream: [") && entry.contains("](https://"),
            "{id} does not link its upstream section:\n{entry}"
        );
    }
}

#[test]
fn rule_ids_are_found_in_text_and_in_test_names() {
    assert_eq!(
        upper_ids("see X509-7, WL-FED-1 and (M-9); not P-256, A-Z0-9, SHA-256, UTF-8, X509-7a"),
        ["X509-7", "WL-FED-1", "M-9"]
    );
    assert_eq!(upper_ids("ISTIO-SECURITY-2021-004 RA-10."), ["RA-10"]);
    assert_eq!(
        test_name_ids(
            "fn wl_12_wl_13_bundles() {}\nfn wl_fed_1_peer() {}\nasync fn x509_4_ca() {}"
        ),
        ["WL-12", "WL-13", "WL-FED-1", "X509-4"]
    );
    assert!(test_name_ids("fn over_2_rules() {} fn p256_key() {} fn tls12() {}").is_empty());
}
