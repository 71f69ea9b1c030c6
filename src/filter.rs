//! rsync-style include/exclude selection (placeholder interface; the real rules land with the
//! filter work). Patterns are matched against paths relative to the base directory.

use crate::proto::manifest::FilterRule;

/// A compiled, ordered list of include/exclude rules: the first matching rule wins.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    rules: Vec<FilterRule>,
}

impl Filter {
    /// Compiles rules in the order given.
    pub fn new(rules: &[FilterRule]) -> anyhow::Result<Self> {
        Ok(Self {
            rules: rules.to_vec(),
        })
    }

    /// Whether `rel` (relative to the base, `/`-separated bytes) is excluded.
    pub fn excluded(&self, _rel: &[u8], _is_dir: bool) -> bool {
        let _ = &self.rules;
        false
    }
}
