//! Header mutations prepared at config time.

use http::{HeaderMap, HeaderName, HeaderValue};
use legate_xds::model;

use super::{CompileError, err};

#[derive(Default)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue, bool)>,
    remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn compile(path: &str, m: &model::HeaderMutation) -> Result<HeaderOps, CompileError> {
        let mut ops = HeaderOps::default();
        for (i, h) in m.add.iter().enumerate() {
            let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                .map_err(|_| err(format!("{path}.add[{i}].name"), "invalid header name"))?;
            let value = HeaderValue::from_str(&h.value)
                .map_err(|_| err(format!("{path}.add[{i}].value"), "invalid header value"))?;
            ops.set.push((name, value, h.append));
        }
        for (i, n) in m.remove.iter().enumerate() {
            ops.remove.push(
                HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
                    .map_err(|_| err(format!("{path}.remove[{i}]"), "invalid header name"))?,
            );
        }
        Ok(ops)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Removes, then adds (`append`) or replaces.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v, append) in &self.set {
            if *append {
                headers.append(n.clone(), v.clone());
            } else {
                headers.insert(n.clone(), v.clone());
            }
        }
    }
}
