//! Where each field of a YAML document is: field path (as
//! `serde_path_to_error` and the validators write it,
//! `services[0].routes[1].timeout`) -> line number, so errors found after
//! parsing can name the line.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field paths to 1-based line numbers.
#[derive(Debug, Default)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    /// Indexes `text`; a document that does not parse gives an empty index
    /// (its syntax error is reported with its own line).
    pub fn index(text: &str) -> Lines {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Lines::default();
        }
        Lines(walker.lines)
    }

    /// The line of `path`, or of its nearest enclosing field that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<(String, Frame)>,
    lines: HashMap<String, usize>,
}

impl Walker {
    /// The path of the node that starts now, if it is a value (not a key).
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some((base, Frame::Map { key })) => key.take().map(|k| {
                if base.is_empty() {
                    k
                } else {
                    format!("{base}.{k}")
                }
            }),
            Some((base, Frame::Seq { index })) => {
                let p = format!("{base}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }

    fn node(&mut self, line: usize, key_text: Option<&str>) -> Option<String> {
        if let Some((_, Frame::Map { key })) = self.stack.last_mut()
            && key.is_none()
        {
            // This node is a key.
            *key = Some(key_text.unwrap_or_default().to_string());
            let path = match self.stack.last() {
                Some((base, _)) if !base.is_empty() => {
                    format!("{base}.{}", key_text.unwrap_or_default())
                }
                _ => key_text.unwrap_or_default().to_string(),
            };
            self.lines.entry(path).or_insert(line);
            return None;
        }
        let p = self.value_path()?;
        self.lines.entry(p.clone()).or_insert(line);
        Some(p)
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                self.node(line, Some(&text));
            }
            Event::Alias(_) => {
                self.node(line, None);
            }
            Event::MappingStart(..) => {
                let p = self.node(line, None).unwrap_or_default();
                self.stack.push((p, Frame::Map { key: None }));
            }
            Event::SequenceStart(..) => {
                let p = self.node(line, None).unwrap_or_default();
                self.stack.push((p, Frame::Seq { index: 0 }));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn block_and_flow_paths_have_lines() {
        let text = "services:\n  - name: a\n    ports:\n      - {port: 80, protocol: http}\n    routes:\n      - destinations:\n          - subset: v1\n            weight: 90\n";
        let l = Lines::index(text);
        assert_eq!(l.line("services"), Some(1));
        assert_eq!(l.line("services[0]"), Some(2));
        assert_eq!(l.line("services[0].name"), Some(2));
        assert_eq!(l.line("services[0].ports[0].protocol"), Some(4));
        assert_eq!(
            l.line("services[0].routes[0].destinations[0].weight"),
            Some(8)
        );
        // A field that is not written falls back to its parent.
        assert_eq!(l.line("services[0].routes[0].timeout"), Some(6));
        assert_eq!(l.line("nothing"), None);
    }
}
