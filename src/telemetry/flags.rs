//! Envoy's response flags: why a request did not simply go upstream and
//! back. A response that meets one carries [`ResponseFlags`] in its
//! extensions, for the access log and the per-flag counter.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlags(u16);

/// Each flag's bit and Envoy's short name, in Envoy's order.
const NAMES: [(u16, &str); 16] = [
    (ResponseFlags::UH.0, "UH"),
    (ResponseFlags::UF.0, "UF"),
    (ResponseFlags::UO.0, "UO"),
    (ResponseFlags::NR.0, "NR"),
    (ResponseFlags::URX.0, "URX"),
    (ResponseFlags::NC.0, "NC"),
    (ResponseFlags::DI.0, "DI"),
    (ResponseFlags::FI.0, "FI"),
    (ResponseFlags::RL.0, "RL"),
    (ResponseFlags::UT.0, "UT"),
    (ResponseFlags::UC.0, "UC"),
    (ResponseFlags::UR.0, "UR"),
    (ResponseFlags::LR.0, "LR"),
    (ResponseFlags::DC.0, "DC"),
    (ResponseFlags::UPE.0, "UPE"),
    (ResponseFlags::DPE.0, "DPE"),
];

impl ResponseFlags {
    /// No healthy upstream.
    pub const UH: Self = Self(1);
    /// Upstream connection failure.
    pub const UF: Self = Self(1 << 1);
    /// Upstream overflow (circuit breaking).
    pub const UO: Self = Self(1 << 2);
    /// No route.
    pub const NR: Self = Self(1 << 3);
    /// Upstream retry limit exceeded.
    pub const URX: Self = Self(1 << 4);
    /// No cluster.
    pub const NC: Self = Self(1 << 5);
    /// Delay injected.
    pub const DI: Self = Self(1 << 6);
    /// Fault (abort) injected.
    pub const FI: Self = Self(1 << 7);
    /// Rate limited.
    pub const RL: Self = Self(1 << 8);
    /// Upstream request timeout.
    pub const UT: Self = Self(1 << 9);
    /// Upstream connection termination.
    pub const UC: Self = Self(1 << 10);
    /// Upstream remote reset (of the stream).
    pub const UR: Self = Self(1 << 11);
    /// Local reset.
    pub const LR: Self = Self(1 << 12);
    /// Downstream connection termination.
    pub const DC: Self = Self(1 << 13);
    /// Upstream protocol error.
    pub const UPE: Self = Self(1 << 14);
    /// Downstream protocol error.
    pub const DPE: Self = Self(1 << 15);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The index (in Envoy's order, below [`ResponseFlags::COUNT`]) and
    /// short name of each flag set.
    pub fn indexed(self) -> impl Iterator<Item = (usize, &'static str)> {
        NAMES
            .iter()
            .enumerate()
            .filter(move |(_, (bit, _))| self.0 & bit != 0)
            .map(|(i, (_, n))| (i, *n))
    }

    /// How many flags there are.
    pub const COUNT: usize = NAMES.len();

    /// The short names of the flags set, in Envoy's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
    }

    /// Adds `flags` to those `resp` carries.
    pub fn mark<B>(resp: &mut http::Response<B>, flags: Self) {
        let ext = resp.extensions_mut();
        match ext.get_mut::<ResponseFlags>() {
            Some(f) => f.insert(flags),
            None => {
                ext.insert(flags);
            }
        }
    }

    /// The flags `resp` carries (none when it carries none).
    pub fn of<B>(resp: &http::Response<B>) -> Self {
        resp.extensions()
            .get::<ResponseFlags>()
            .copied()
            .unwrap_or_default()
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// Envoy's format: names joined by commas, `-` when there are none.
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, n) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_as_envoy_does() {
        assert_eq!(ResponseFlags::default().to_string(), "-");
        let f = ResponseFlags::URX | ResponseFlags::UF;
        assert_eq!(f.to_string(), "UF,URX");
        assert!(f.contains(ResponseFlags::UF) && !f.contains(ResponseFlags::UO));
        let mut r = http::Response::new(());
        ResponseFlags::mark(&mut r, ResponseFlags::UO);
        ResponseFlags::mark(&mut r, ResponseFlags::URX);
        assert_eq!(ResponseFlags::of(&r).to_string(), "UO,URX");
    }
}
