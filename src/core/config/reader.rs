//! Reads a JSON object field by field, collecting every problem with its path instead of
//! stopping at the first, and reports fields nobody asked for as unknown.

use serde_json::{Map, Value};

use crate::core::config::duration;
use crate::core::log_text::one_line;

/// All problems found in one configuration, each prefixed with the path of its field.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<String>);

impl Problems {
    /// One problem, one line: values echoed from the config (or its environment) cannot
    /// break the line it is logged on.
    pub(crate) fn add(&mut self, path: &str, message: impl std::fmt::Display) {
        let line = format!("{path}: {message}");
        self.0.push(one_line(&line).into_owned());
    }
}

/// One JSON object being read; `finish` reports the fields that were never read.
pub(crate) struct ObjectReader<'a> {
    path: String,
    object: Option<&'a Map<String, Value>>,
    read: Vec<&'static str>,
}

impl<'a> ObjectReader<'a> {
    pub(crate) fn new(path: &str, value: &'a Value, problems: &mut Problems) -> Self {
        let object = value.as_object();
        if object.is_none() {
            problems.add(path, "must be an object");
        }
        ObjectReader {
            path: path.to_string(),
            object,
            read: Vec::new(),
        }
    }

    pub(crate) fn field_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The raw value of a field, `None` when absent or null.
    pub(crate) fn value(&mut self, name: &'static str) -> Option<&'a Value> {
        self.read.push(name);
        self.object?.get(name).filter(|v| !v.is_null())
    }

    /// Whether the object has the field (null counts as absent); reads nothing.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.object
            .and_then(|o| o.get(name))
            .is_some_and(|v| !v.is_null())
    }

    pub(crate) fn string(&mut self, name: &'static str, problems: &mut Problems) -> Option<String> {
        let value = self.value(name)?;
        let text = value.as_str().map(str::to_string);
        if text.is_none() {
            problems.add(&self.field_path(name), "must be a string");
        }
        text
    }

    pub(crate) fn bool(
        &mut self,
        name: &'static str,
        default: bool,
        problems: &mut Problems,
    ) -> bool {
        match self.value(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                problems.add(&self.field_path(name), "must be true or false");
                default
            }
        }
    }

    pub(crate) fn positive_integer(
        &mut self,
        name: &'static str,
        default: u64,
        problems: &mut Problems,
    ) -> u64 {
        match self.value(name) {
            None => default,
            Some(v) => match whole_number(v).filter(|n| *n > 0) {
                Some(n) => n,
                None => {
                    problems.add(&self.field_path(name), "must be a whole number above 0");
                    default
                }
            },
        }
    }

    /// A duration such as "5s", in milliseconds.
    pub(crate) fn duration_millis(
        &mut self,
        name: &'static str,
        default: u64,
        problems: &mut Problems,
    ) -> u64 {
        let path = self.field_path(name);
        match self.string(name, problems) {
            None => default,
            Some(text) => duration::parse_millis(&text).unwrap_or_else(|e| {
                problems.add(&path, e);
                default
            }),
        }
    }

    pub(crate) fn string_list(
        &mut self,
        name: &'static str,
        problems: &mut Problems,
    ) -> Option<Vec<String>> {
        let value = self.value(name)?;
        let path = self.field_path(name);
        let Some(items) = value.as_array() else {
            problems.add(&path, "must be a list of strings");
            return None;
        };
        let mut strings = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => strings.push(s.to_string()),
                None => problems.add(&format!("{path}[{i}]"), "must be a string"),
            }
        }
        Some(strings)
    }

    pub(crate) fn finish(self, problems: &mut Problems) {
        let Some(object) = self.object else { return };
        for key in object.keys() {
            if !self.read.contains(&key.as_str()) {
                problems.add(&self.field_path(key), "unknown field");
            }
        }
    }
}

/// A JSON number with no fraction, as JSON Schema's "integer" (and Istio, whose pluginConfig
/// numbers are doubles) sees it: `8192` and `8192.0` alike; none above u64.
pub(crate) fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        // 2^64 as f64; every whole f64 below it fits a u64 exactly.
        (f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0).then_some(f as u64)
    })
}
