//! What the ADS client reports to the admin server: connection state, the
//! version of each resource type and resource with the time it was
//! applied, and the last rejected update per type.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Inner {
    server: String,
    connected: bool,
    types: BTreeMap<String, TypeStatus>,
}

#[derive(Default)]
struct TypeStatus {
    version: String,
    applied_at: f64,
    /// name -> (version, applied at)
    resources: BTreeMap<String, (String, f64)>,
    last_nack: Option<Value>,
}

/// Shared between the client task and the admin server.
#[derive(Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Status {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn set_connected(&self, server: &str, connected: bool) {
        self.with(|i| {
            i.server = server.to_string();
            i.connected = connected;
        });
    }

    /// Records an accepted update: the type's version and every resource
    /// it now holds (a resource keeps its apply time while its version
    /// stays the same).
    pub fn applied<'a>(
        &self,
        type_url: &str,
        version: &str,
        resources: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        let t_now = now();
        self.with(|i| {
            let t = i.types.entry(type_url.to_string()).or_default();
            t.version = version.to_string();
            t.applied_at = t_now;
            let mut next = BTreeMap::new();
            for (name, v) in resources {
                let at = match t.resources.get(name) {
                    Some((old, at)) if old == v => *at,
                    _ => t_now,
                };
                next.insert(name.to_string(), (v.to_string(), at));
            }
            t.resources = next;
        });
    }

    /// Records a rejected update (NACK).
    pub fn rejected(&self, type_url: &str, version: &str, nonce: &str, error: &str) {
        let t_now = now();
        self.with(|i| {
            i.types.entry(type_url.to_string()).or_default().last_nack = Some(json!({
                "version": version,
                "nonce": nonce,
                "error": error,
                "at": t_now,
            }));
        });
    }

    /// The `xds` section of `/config_dump`. Times are Unix seconds.
    pub fn to_json(&self) -> Value {
        self.with(|i| {
            let types: serde_json::Map<String, Value> = i
                .types
                .iter()
                .map(|(url, t)| {
                    let resources: serde_json::Map<String, Value> = t
                        .resources
                        .iter()
                        .map(|(n, (v, at))| (n.clone(), json!({"version": v, "applied_at": at})))
                        .collect();
                    (
                        url.clone(),
                        json!({
                            "version": t.version,
                            "applied_at": t.applied_at,
                            "resources": resources,
                            "last_nack": t.last_nack,
                        }),
                    )
                })
                .collect();
            json!({"server": i.server, "connected": i.connected, "types": types})
        })
    }
}
