//! A cursor over a parsed document that remembers its field path, so every
//! validation error can say exactly where it happened.

use serde_json::{Map, Value};

use crate::error::{ValidationError, ValidationKind};

pub(crate) type VResult<T> = Result<T, ValidationError>;

/// One value in a document together with its path.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: String,
}

impl<'a> Node<'a> {
    pub(crate) fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    pub(crate) fn err(&self, kind: ValidationKind) -> ValidationError {
        ValidationError {
            field: if self.path.is_empty() {
                "<document>".to_owned()
            } else {
                self.path.clone()
            },
            kind,
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn object(&self) -> VResult<&'a Map<String, Value>> {
        self.value.as_object().ok_or_else(|| {
            self.err(ValidationKind::WrongType {
                expected: "an object",
            })
        })
    }

    /// Rejects keys outside `allowed`.
    pub(crate) fn only_keys(&self, allowed: &[&str]) -> VResult<()> {
        for key in self.object()?.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(ValidationError {
                    field: self.child_path(key),
                    kind: ValidationKind::UnknownField,
                });
            }
        }
        Ok(())
    }

    /// A child field; `None` when absent. An explicit `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> VResult<Option<Node<'a>>> {
        Ok(self.object()?.get(key).and_then(|v| {
            (!v.is_null()).then(|| Node {
                value: v,
                path: self.child_path(key),
            })
        }))
    }

    /// A child field that must be present.
    pub(crate) fn require(&self, key: &str) -> VResult<Node<'a>> {
        self.get(key)?.ok_or_else(|| ValidationError {
            field: self.child_path(key),
            kind: ValidationKind::Missing,
        })
    }

    /// Whether the key is present, even with a `null` value.
    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.value.as_object().is_some_and(|m| m.contains_key(key))
    }

    pub(crate) fn str(&self) -> VResult<&'a str> {
        self.value.as_str().ok_or_else(|| {
            self.err(ValidationKind::WrongType {
                expected: "a string",
            })
        })
    }

    pub(crate) fn non_empty_str(&self) -> VResult<&'a str> {
        let s = self.str()?;
        if s.is_empty() {
            return Err(self.err(ValidationKind::EmptyString));
        }
        Ok(s)
    }

    pub(crate) fn bool(&self) -> VResult<bool> {
        self.value.as_bool().ok_or_else(|| {
            self.err(ValidationKind::WrongType {
                expected: "a boolean",
            })
        })
    }

    /// The elements of a list, each with its indexed path.
    pub(crate) fn items(&self) -> VResult<Vec<Node<'a>>> {
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.err(ValidationKind::WrongType { expected: "a list" }))?;
        Ok(list
            .iter()
            .enumerate()
            .map(|(i, v)| Node {
                value: v,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// The entries of a map, each with its keyed path.
    pub(crate) fn entries(&self) -> VResult<Vec<(&'a str, Node<'a>)>> {
        Ok(self
            .object()?
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    Node {
                        value: v,
                        path: self.child_path(k),
                    },
                )
            })
            .collect())
    }

    /// A list of non-empty strings (V-1: no empty strings in any list).
    pub(crate) fn str_list(&self) -> VResult<Vec<String>> {
        self.items()?
            .iter()
            .map(|n| n.non_empty_str().map(str::to_owned))
            .collect()
    }

    /// An optional list of non-empty strings; absent → empty.
    pub(crate) fn opt_str_list(&self, key: &str) -> VResult<Vec<String>> {
        match self.get(key)? {
            Some(n) => n.str_list(),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> VResult<Option<String>> {
        self.get(key)?
            .map(|n| n.str().map(str::to_owned))
            .transpose()
    }
}
